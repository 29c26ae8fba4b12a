//! `iris-testbed demo --openflow-only`: the codec-level check that
//! predates the controller. It runs the codec's live interop sequence
//! against a real ovs-vswitchd (`iris_testbed::interop`, the same code the interop test
//! runs) and prints every step for a human: each message exchanged in the
//! codec's `ovs-ofctl`-like rendering, each check that held, and
//! `ovs-ofctl dump-flows` beside the FLOW_STATS reply.

use std::process::ExitCode;

use iris_testbed::interop::{self, Event, Wire};
use iris_testbed::Config;

/// Runs the codec interop; the exit code is non-zero on any failure.
pub fn run(config: Config) -> ExitCode {
    println!(
        "Iris OpenFlow interop: the OpenFlow 1.3 codec (crate ofp) against a real Open vSwitch.\n\
         A minimal listener built on the codec alone accepts ovs-vswitchd's connection;\n\
         -> is a message Iris sent, <- one it received and decoded, ok a check that held."
    );
    let (mut sent, mut received, mut checks) = (0usize, 0usize, 0usize);
    let result = interop::run(config, &mut |event: &Event| {
        match event {
            Event::Sent(Wire::Message(_) | Wire::Raw { .. }) => sent += 1,
            Event::Received(_) => received += 1,
            Event::Verified(_) => checks += 1,
            _ => {}
        }
        println!("{event}");
    });
    match result {
        Ok(_) => {
            println!(
                "\nDone: {sent} messages sent, {received} received and decoded, \
                 {checks} checks held; the testbed is gone."
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\nOpenFlow interop failed: {e}");
            ExitCode::FAILURE
        }
    }
}
