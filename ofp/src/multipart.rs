//! Multipart request and reply bodies. INTERFACE STUB: filled in by the message work.
