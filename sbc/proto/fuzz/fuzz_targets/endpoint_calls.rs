//! Fuzzes the call logic: sequences of SIP messages between a customer trunk, two carriers and a stranger, and
//! timer expiries, played against the sans-IO endpoint (transactions, dialogs, the B2BUA) under simulated time.
//! The grammar and the invariants live in `sbc_proto::fuzzing` (feature `fuzzing`): no panic, every message sent
//! parses, every call that starts ends with exactly one CDR, and once every timer has fired no call, dialog,
//! transaction, timer or media port is left.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sbc_proto::fuzzing::{run, Scenario};

fuzz_target!(|scenario: Scenario| {
    run(&scenario);
});
