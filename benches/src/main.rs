//! `sbc-bench`: the load-test harness. Its scenarios land with the load-test issue; today it only says so.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("sbc-bench scenarios are not implemented yet; see `cargo bench -p sbc-bench` for micro-benches")
}
