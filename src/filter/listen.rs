//! The stream of an approved `subscriptions/listen`, filtered for its caller event by event
//! as it passes: a `notifications/resources/updated` for a resource the caller may not read
//! is dropped (`subscriptions::keep_event`), everything else goes on unchanged. The stream
//! is never held: each chunk leaves with the complete events it finished.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, BufferType, MapType};

use super::answer::replace_chunk;
use super::shared::Shared;
use crate::identity::Identity;
use crate::policy::subscriptions::keep_event;
use crate::response::sse::{event_data, SseFramer};

pub struct ListenStream {
    shared: Rc<Shared>,
    identity: Identity,
    /// `None` until the answer turned out to be an event stream (a JSON error passes).
    framer: Option<SseFramer>,
}

impl ListenStream {
    pub fn new(shared: Rc<Shared>, identity: Identity) -> ListenStream {
        ListenStream {
            shared,
            identity,
            framer: None,
        }
    }

    /// An event stream is filtered; its length may change, so it goes on without one.
    pub fn on_headers(&mut self) -> Action {
        let media = hostcalls::get_map_value(MapType::HttpResponseHeaders, "content-type")
            .ok()
            .flatten()
            .unwrap_or_default();
        if media
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("text/event-stream")
        {
            let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, "content-length", None);
            self.framer = Some(SseFramer::default());
        }
        Action::Continue
    }

    pub fn on_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(framer) = &mut self.framer else {
            return Action::Continue;
        };
        let chunk = match hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size) {
            Ok(chunk) => chunk.unwrap_or_default(),
            // Unreadable: nothing of it may pass unjudged.
            Err(_) => return replace_chunk(body_size, b""),
        };
        let mut events = framer.push(&chunk);
        if end_of_stream {
            events.push(framer.finish());
        }
        let rules = self.shared.config.policy.applicable(&self.identity);
        let mut out = Vec::with_capacity(chunk.len());
        for event in events {
            if event_data(&event).is_none_or(|data| keep_event(&rules, &data)) {
                out.extend_from_slice(&event);
            }
        }
        if out == chunk {
            return Action::Continue;
        }
        replace_chunk(body_size, &out)
    }
}
