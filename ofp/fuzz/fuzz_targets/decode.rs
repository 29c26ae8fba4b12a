//! `OfpMessage::parse` never panics on any input, and whatever it accepts
//! is stable under emit → parse → emit: the re-decoded message equals the
//! first decode and encodes to the same bytes. Printing (as logs and the
//! CLI do) and error reporting must not panic either.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ofp::OfpMessage;

fuzz_target!(|data: &[u8]| {
    let m = match OfpMessage::parse(data) {
        Ok(m) => m,
        Err(e) => {
            // Every rejection names its fault and an OFPT_ERROR code.
            let _ = (e.to_string(), e.ofp_error());
            return;
        }
    };
    let _ = m.to_string();
    let first = m.to_bytes();
    let again = match OfpMessage::parse(&first) {
        Ok(again) => again,
        Err(e) => panic!("{m:?}\nencodes to bytes the decoder rejects: {e}\n{first:02x?}"),
    };
    assert_eq!(again, m, "emit then parse changed the message");
    assert_eq!(again.to_bytes(), first, "emit is not stable");
});
