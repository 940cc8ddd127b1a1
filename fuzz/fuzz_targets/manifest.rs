//! `Manifest::from_json` on arbitrary bytes: it may refuse, never panic, and
//! whatever it accepts tiles its file and survives a serialise/parse round trip.
#![no_main]

use keeper_agent::manifest::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(manifest) = Manifest::from_json(data) else {
        return;
    };
    let mut end = 0u64;
    for member in &manifest.members {
        assert_eq!(member.offset, end);
        end = member.offset + member.length;
    }
    assert_eq!(end, manifest.file.size);
    let json = manifest.to_json().expect("an accepted manifest serialises");
    let again = Manifest::from_json(&json).expect("a serialised manifest parses");
    assert_eq!(again.members.len(), manifest.members.len());
});
