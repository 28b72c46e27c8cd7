"""Signing keys, JWKS documents and tokens for authentication tests (PyJWT + cryptography)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ISSUER = "https://idp.test"
AUDIENCE = "https://mcp.test/mcp"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    def jwk(self, with_alg: bool = True) -> dict[str, Any]:
        """The public JWK, optionally without `alg` (many identity providers omit it)."""
        public = self.private.public_key()
        exporter = {"RS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}[self.alg]
        jwk = json.loads(exporter.to_jwk(public))
        jwk["kid"] = self.kid
        jwk["use"] = "sig"
        if with_alg:
            jwk["alg"] = self.alg
        else:
            jwk.pop("alg", None)
        return jwk

    def token(self, subject: str = "alice", *, lifetime: int = 300, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "iat": now, "exp": now + lifetime, **claims}
        return jwt.encode(payload, self.private, algorithm=self.alg, headers={"kid": self.kid})


def new_key(kid: str, alg: str = "RS256") -> SigningKey:
    private = {
        "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
        "EdDSA": ed25519.Ed25519PrivateKey.generate,
    }[alg]()
    return SigningKey(kid, alg, private)


def jwks(*keys: SigningKey, with_alg: bool = True) -> dict[str, Any]:
    return {"keys": [k.jwk(with_alg) for k in keys]}
