//! Compact JWS verification for the algorithms whose signatures mcp-guard checks itself
//! ([`super::rsa`]): the header and claim checks of jwt-simple's own `verify_token`, in
//! its order and with its errors, so that a token is judged the same whichever code checks
//! its signature. Only the base64url decoding is stricter: padding and non-canonical
//! trailing bits are refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::{JWTClaims, NoCustomClaims, Token, VerificationOptions};
use jwt_simple::JWTError;

/// jwt-simple's default `max_header_length`.
const MAX_HEADER_LENGTH: usize = 8192;

fn fail<T>(e: JWTError) -> Result<T, jwt_simple::Error> {
    Err(e.into())
}

fn check(ok: bool, e: JWTError) -> Result<(), jwt_simple::Error> {
    if ok {
        Ok(())
    } else {
        fail(e)
    }
}

/// Verifies `token` for `alg`: `signature_ok` gets the signed bytes (`header.payload`) and
/// the decoded signature.
pub(crate) fn verify(
    alg: &str,
    token: &str,
    options: &VerificationOptions,
    signature_ok: impl FnOnce(&[u8], &[u8]) -> bool,
) -> Result<JWTClaims<NoCustomClaims>, jwt_simple::Error> {
    if let Some(max) = options.max_token_length {
        check(token.len() <= max, JWTError::TokenTooLong)?;
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return fail(JWTError::CompactEncodingError);
    };
    check(
        header_b64.len() <= options.max_header_length.unwrap_or(MAX_HEADER_LENGTH),
        JWTError::HeaderTooLarge,
    )?;
    let header = Token::decode_metadata(token)?;
    check(
        header.critical().is_none_or(<[String]>::is_empty),
        JWTError::UnknownCriticalExtension,
    )?;
    let typ = header.signature_type().map(str::to_uppercase);
    match &options.required_signature_type {
        Some(required) => check(
            typ.as_deref() == Some(required.to_uppercase().as_str()),
            JWTError::RequiredSignatureTypeMismatch,
        )?,
        None => check(
            typ.as_deref()
                .is_none_or(|t| t == "JWT" || t.ends_with("+JWT")),
            JWTError::NotJWT,
        )?,
    }
    if let Some(required) = &options.required_content_type {
        check(
            header.content_type().map(str::to_uppercase) == Some(required.to_uppercase()),
            JWTError::RequiredContentTypeMismatch,
        )?;
    }
    check(header.algorithm() == alg, JWTError::AlgorithmMismatch)?;
    if let Some(required) = &options.required_key_id {
        let kid = header.key_id().ok_or(JWTError::MissingJWTKeyIdentifier)?;
        check(kid == required, JWTError::KeyIdentifierMismatch)?;
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| JWTError::CompactEncodingError)?;
    let signed = token
        .get(..header_b64.len() + 1 + claims_b64.len())
        .ok_or(JWTError::CompactEncodingError)?;
    check(
        signature_ok(signed.as_bytes(), &signature),
        JWTError::InvalidSignature,
    )?;
    let payload = URL_SAFE_NO_PAD
        .decode(claims_b64)
        .map_err(|_| JWTError::CompactEncodingError)?;
    let claims: JWTClaims<NoCustomClaims> = serde_json::from_slice(&payload)?;
    validate(&claims, options)?;
    Ok(claims)
}

/// jwt-simple's `JWTClaims::validate` (not public).
fn validate(
    claims: &JWTClaims<NoCustomClaims>,
    options: &VerificationOptions,
) -> Result<(), jwt_simple::Error> {
    let now = options
        .artificial_time
        .unwrap_or_else(jwt_simple::prelude::Clock::now_since_epoch);
    let tolerance = options.time_tolerance.unwrap_or_default();
    if let Some(reject_before) = options.reject_before {
        let issued = claims.issued_at.ok_or(JWTError::OldTokenReused)?;
        check(issued >= reject_before, JWTError::OldTokenReused)?;
    }
    if !options.accept_future {
        if let Some(issued) = claims.issued_at {
            check(issued <= now + tolerance, JWTError::ClockDrift)?;
        }
    }
    if let Some(max_validity) = options.max_validity {
        let issued = claims.issued_at.ok_or(JWTError::TokenIsTooOld)?;
        check(
            now <= issued || now - issued <= max_validity,
            JWTError::TokenIsTooOld,
        )?;
    }
    if !options.accept_future {
        if let Some(nbf) = claims.invalid_before {
            check(now + tolerance >= nbf, JWTError::TokenNotValidYet)?;
        }
    }
    if let Some(exp) = claims.expires_at {
        check(
            now >= tolerance && now - tolerance <= exp,
            JWTError::TokenHasExpired,
        )?;
    }
    // Each required claim: `None` if not required, else whether present and accepted.
    let required = [
        (
            options
                .allowed_issuers
                .as_ref()
                .map(|allowed| claims.issuer.as_ref().map(|i| allowed.contains(i))),
            JWTError::RequiredIssuerMismatch,
            JWTError::RequiredIssuerMissing,
        ),
        (
            options
                .required_subject
                .as_ref()
                .map(|required| claims.subject.as_ref().map(|s| s == required)),
            JWTError::RequiredSubjectMismatch,
            JWTError::RequiredSubjectMissing,
        ),
        (
            options
                .required_nonce
                .as_ref()
                .map(|required| claims.nonce.as_ref().map(|n| n == required)),
            JWTError::RequiredNonceMismatch,
            JWTError::RequiredNonceMissing,
        ),
        (
            options
                .allowed_audiences
                .as_ref()
                .map(|allowed| claims.audiences.as_ref().map(|a| a.contains(allowed))),
            JWTError::RequiredAudienceMismatch,
            JWTError::RequiredAudienceMissing,
        ),
    ];
    for (outcome, mismatch, missing) in required {
        match outcome {
            Some(None) => return fail(missing),
            Some(Some(false)) => return fail(mismatch),
            None | Some(Some(true)) => {}
        }
    }
    Ok(())
}
