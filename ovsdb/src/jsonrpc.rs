//! JSON-RPC 1.0 as OVSDB uses it (RFC 7047 §4): message types and the framing
//! of a byte stream into messages. No I/O.
//!
//! OVSDB puts no delimiter between messages; each is one JSON object. The
//! decoder tracks nesting across reads, so a message split over many reads
//! is scanned once, not once per read.

use serde_json::{json, Value as Json};

use crate::error::ProtocolError;

/// One JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A call that wants an answer with the same `id`.
    Request {
        id: Json,
        method: String,
        params: Json,
    },
    /// A call without an answer (`"id": null`), such as `update`.
    Notification { method: String, params: Json },
    /// The answer to a request: `result`, or the `error` the server sent.
    Response {
        id: Json,
        result: Result<Json, Json>,
    },
}

impl Message {
    pub fn to_json(&self) -> Json {
        match self {
            Self::Request { id, method, params } => {
                json!({"id": id, "method": method, "params": params})
            }
            Self::Notification { method, params } => {
                json!({"id": null, "method": method, "params": params})
            }
            Self::Response {
                id,
                result: Ok(result),
            } => {
                json!({"id": id, "result": result, "error": null})
            }
            Self::Response {
                id,
                result: Err(error),
            } => {
                json!({"id": id, "result": null, "error": error})
            }
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        // A Value always serializes; the fallback keeps the wire format valid
        // rather than panicking.
        serde_json::to_vec(&self.to_json()).unwrap_or_else(|_| b"{}".to_vec())
    }

    pub fn from_json(json: Json) -> Result<Self, ProtocolError> {
        let Json::Object(mut obj) = json else {
            return Err(ProtocolError::new("JSON-RPC message", "not an object"));
        };
        let id = obj.remove("id").unwrap_or(Json::Null);
        if let Some(method) = obj.remove("method") {
            let Json::String(method) = method else {
                return Err(ProtocolError::new(
                    "JSON-RPC request",
                    "method is not a string",
                ));
            };
            let params = obj.remove("params").unwrap_or(Json::Null);
            if !params.is_array() {
                return Err(ProtocolError::new(
                    format!("JSON-RPC request {method:?}"),
                    "params is not an array",
                ));
            }
            return Ok(if id.is_null() {
                Self::Notification { method, params }
            } else {
                Self::Request { id, method, params }
            });
        }
        if !obj.contains_key("result") && !obj.contains_key("error") {
            return Err(ProtocolError::new(
                "JSON-RPC message",
                "neither a request (method) nor a response (result/error)",
            ));
        }
        let error = obj.remove("error").unwrap_or(Json::Null);
        let result = obj.remove("result").unwrap_or(Json::Null);
        Ok(Self::Response {
            id,
            result: if error.is_null() {
                Ok(result)
            } else {
                Err(error)
            },
        })
    }
}

/// Splits a byte stream into JSON-RPC messages.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Bytes before `scanned` have been looked at by the scanner.
    scanned: usize,
    /// Where the object being scanned starts, once its `{` was seen.
    start: Option<usize>,
    depth: usize,
    in_string: bool,
    escaped: bool,
    max_len: usize,
}

impl FrameDecoder {
    /// `max_len` bounds one message, so a peer cannot make us buffer without end.
    pub fn new(max_len: usize) -> Self {
        Self {
            buf: Vec::new(),
            scanned: 0,
            start: None,
            depth: 0,
            in_string: false,
            escaped: false,
            max_len,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, `Ok(None)` if more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, ProtocolError> {
        while self.scanned < self.buf.len() {
            let i = self.scanned;
            let b = self.buf[i];
            self.scanned += 1;
            if self.start.is_none() {
                match b {
                    b' ' | b'\t' | b'\r' | b'\n' => continue,
                    b'{' => {
                        self.start = Some(i);
                        self.depth = 1;
                        continue;
                    }
                    other => {
                        return Err(ProtocolError::new(
                            "JSON-RPC framing",
                            format!("expected '{{' to start a message, got byte 0x{other:02x}"),
                        ))
                    }
                }
            }
            if self.in_string {
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        return self.take_frame(i).map(Some);
                    }
                }
                _ => {}
            }
        }
        match self.start {
            None => {
                self.buf.clear();
                self.scanned = 0;
            }
            Some(start) if self.buf.len() - start > self.max_len => {
                return Err(ProtocolError::new(
                    "JSON-RPC framing",
                    format!("message longer than the limit of {} bytes", self.max_len),
                ));
            }
            Some(_) => {}
        }
        Ok(None)
    }

    fn take_frame(&mut self, end: usize) -> Result<Message, ProtocolError> {
        let start = self.start.take().unwrap_or(0);
        let parsed = serde_json::from_slice::<Json>(&self.buf[start..=end]);
        self.buf.drain(..=end);
        self.scanned = 0;
        let json = parsed.map_err(|e| ProtocolError::new("JSON-RPC framing", e.to_string()))?;
        Message::from_json(json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(dec: &mut FrameDecoder) -> Vec<Message> {
        std::iter::from_fn(|| dec.next_message().unwrap()).collect()
    }

    #[test]
    fn splits_back_to_back_messages_fed_byte_by_byte() {
        let stream = br#"{"id":1,"result":[{"rows":[{"name":"br}{\"x"}]}],"error":null} {"id":null,"method":"update","params":["m",{}]}
{"id":"echo","method":"echo","params":[]}"#;
        let mut dec = FrameDecoder::new(1 << 20);
        let mut got = Vec::new();
        for b in stream.iter() {
            dec.push(std::slice::from_ref(b));
            got.extend(decode_all(&mut dec));
        }
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[0],
            Message::Response {
                id: json!(1),
                result: Ok(json!([{"rows":[{"name":"br}{\"x"}]}]))
            }
        );
        assert_eq!(
            got[1],
            Message::Notification {
                method: "update".into(),
                params: json!(["m", {}])
            }
        );
        assert_eq!(
            got[2],
            Message::Request {
                id: json!("echo"),
                method: "echo".into(),
                params: json!([])
            }
        );
    }

    #[test]
    fn encode_then_decode_gives_the_message_back() {
        let msgs = [
            Message::Request {
                id: json!(7),
                method: "transact".into(),
                params: json!(["db", {}]),
            },
            Message::Notification {
                method: "update".into(),
                params: json!([null, {}]),
            },
            Message::Response {
                id: json!("echo"),
                result: Ok(json!([])),
            },
            Message::Response {
                id: json!(3),
                result: Err(json!({"error": "unknown database"})),
            },
        ];
        let mut dec = FrameDecoder::new(1 << 20);
        for m in &msgs {
            dec.push(&m.encode());
        }
        assert_eq!(decode_all(&mut dec), msgs);
    }

    #[test]
    fn rejects_garbage_oversized_and_shapeless_messages() {
        let mut dec = FrameDecoder::new(64);
        dec.push(b"  [1]");
        assert!(dec.next_message().is_err());

        let mut dec = FrameDecoder::new(16);
        dec.push(b"{\"id\": 1, \"result\": \"0123456789abcdef\"");
        assert!(dec
            .next_message()
            .unwrap_err()
            .detail
            .contains("limit of 16"));

        let mut dec = FrameDecoder::new(64);
        dec.push(b"{\"id\": 1}");
        assert!(dec.next_message().is_err());

        let mut dec = FrameDecoder::new(64);
        dec.push(b"{\"method\": \"echo\", \"params\": {}}");
        assert!(dec
            .next_message()
            .unwrap_err()
            .detail
            .contains("params is not an array"));

        let mut dec = FrameDecoder::new(64);
        dec.push(b"{\"a\": tru}");
        assert!(dec.next_message().is_err());
    }

    #[test]
    fn whitespace_only_input_leaves_nothing_buffered() {
        let mut dec = FrameDecoder::new(8);
        for _ in 0..100 {
            dec.push(b"\n\n\n\n");
            assert_eq!(dec.next_message().unwrap(), None);
        }
        assert!(dec.buf.is_empty());
    }
}
