//! The restore's statement splitter on arbitrary member text: it may report
//! an unterminated string or comment, never panic or loop, and every
//! statement it yields is a slice of the input at the offset it claims.
#![no_main]

use keeper_agent::restore::statements::split;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut last = 0usize;
    for (count, item) in split(data).enumerate() {
        assert!(count <= data.len(), "more statements than bytes");
        let Ok(statement) = item else { break };
        assert!(statement.offset >= last, "statements go backwards");
        let end = statement.offset + statement.text.len();
        assert!(end <= data.len());
        assert_eq!(&data[statement.offset..end], statement.text);
        last = statement.offset;
    }
});
