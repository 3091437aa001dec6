//! Carrier routing in sbc-proto: a prefix table of 1,000,000 E.164 prefixes and the selection of a route's
//! carriers. Groups:
//! - `routing/longest_match`: one lookup per called number, over 4096 numbers of which about three in four
//!   extend a stored prefix (hits at every depth) and the rest are random (mostly short or no match).
//! - `routing/select`: ordering a route of four carriers (two priorities, weights) for one call.
//!
//! The table's load time (insert + build from strings) is a one-off and printed once, not measured by criterion.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sbc_proto::routing::{select, Candidate, PrefixTable, PrefixTableBuilder, SkipReason, TrunkId};
use std::time::Instant;

const PREFIXES: usize = 1_000_000;
const NUMBERS: usize = 4096;

/// xorshift64: deterministic, good enough to spread digits.
fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

fn digits(next: &mut impl FnMut() -> u64, out: &mut String, n: usize) {
    for _ in 0..n {
        out.push(char::from(b'0' + (next() % 10) as u8));
    }
}

/// Random-ish E.164 prefixes: `+`, a country code from a small list (so prefixes share their first levels as in
/// real tables), then 2 to 9 more digits; deduplicated, exactly `PREFIXES` of them.
fn prefixes() -> Vec<String> {
    const COUNTRIES: [&str; 12] = ["1", "7", "33", "34", "39", "41", "44", "49", "61", "81", "86", "353"];
    let mut next = xorshift(0x2545_F491_4F6C_DD1D);
    let mut out = Vec::with_capacity(PREFIXES + PREFIXES / 8);
    while out.len() < PREFIXES {
        while out.len() < PREFIXES + PREFIXES / 8 {
            let mut p = String::with_capacity(16);
            p.push('+');
            p.push_str(COUNTRIES[(next() % COUNTRIES.len() as u64) as usize]);
            let more = 2 + (next() % 8) as usize;
            digits(&mut next, &mut p, more);
            out.push(p);
        }
        out.sort_unstable();
        out.dedup();
    }
    out.truncate(PREFIXES);
    // Load order as a config file might give it: not sorted.
    let mut shuffle = xorshift(7);
    for i in (1..out.len()).rev() {
        out.swap(i, (shuffle() % (i as u64 + 1)) as usize);
    }
    out
}

fn load(prefixes: &[String]) -> PrefixTable<u32> {
    let mut builder = PrefixTableBuilder::with_capacity(prefixes.len());
    for (i, p) in prefixes.iter().enumerate() {
        builder.insert(p, i as u32).expect("generated prefixes are valid");
    }
    builder.build().expect("generated prefixes are unique")
}

fn numbers(prefixes: &[String]) -> Vec<String> {
    let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
    (0..NUMBERS)
        .map(|_| {
            let mut n = String::with_capacity(16);
            if next().is_multiple_of(4) {
                n.push('+');
                digits(&mut next, &mut n, 12);
            } else {
                n.push_str(&prefixes[(next() % prefixes.len() as u64) as usize]);
                let len = n.len();
                digits(&mut next, &mut n, 15usize.saturating_sub(len).max(1));
            }
            n
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let prefixes = prefixes();
    let started = Instant::now();
    let table = load(&prefixes);
    let elapsed = started.elapsed();
    let numbers = numbers(&prefixes);
    let hits = numbers.iter().filter(|n| table.longest_match(n).is_some()).count();
    println!(
        "routing: loaded {} prefixes in {:.0} ms ({} trie nodes, {:.1} MB of nodes); {hits}/{NUMBERS} numbers match",
        table.len(),
        elapsed.as_secs_f64() * 1e3,
        table.node_count(),
        (table.node_count() * 12) as f64 / 1e6,
    );

    let mut group = c.benchmark_group("routing");
    group.throughput(Throughput::Elements(NUMBERS as u64));
    group.bench_function("longest_match", |b| {
        b.iter(|| {
            let mut sum = 0usize;
            for n in &numbers {
                if let Some(m) = table.longest_match(black_box(n)) {
                    sum += m.prefix_len + *m.value as usize;
                }
            }
            sum
        })
    });

    let route = [
        Candidate::new(TrunkId(1), 1).with_weight(60),
        Candidate::new(TrunkId(2), 1).with_weight(40),
        Candidate::new(TrunkId(3), 2),
        Candidate::new(TrunkId(4), 2),
    ];
    let mut random = xorshift(42);
    group.throughput(Throughput::Elements(1));
    group.bench_function("select", |b| {
        b.iter(|| select(black_box(&route), |t| if t.0 == 4 { Err(SkipReason::Down) } else { Ok(()) }, &mut random))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
