//! Network datapath benchmarks (run by hand through `bench/net/*.sh`, as root).
//!
//! - `net_bench prog-cost [SIZES] [REPEAT]`: per-packet cost of the Palisade XDP program
//!   via `BPF_PROG_TEST_RUN`, for rule sets of SIZES (default 1,1000,100000,1000000)
//!   deny CIDRs of mixed prefix lengths, beside a minimal LPM-trie-only XDP program
//!   (`bpf/bench/bench_lpm.bpf.c`) holding the same entries. Packets: a source hitting a /32,
//!   one hitting a /24, one matching nothing; then, from a source matching nothing, other
//!   shapes: a plain IPv4 packet, the first and a later fragment of a datagram (its first
//!   fragment tracked), a plain IPv6 packet and one behind two extension headers. Then the
//!   same sizes of IPv6 deny CIDRs (40% /128, 20% /64, 15% /56, 15% /48, 7% /40, 3% /32,
//!   random under 2000::/3) beside the IPv6 LPM-trie program (`bpf/bench/bench_lpm6.bpf.c`):
//!   a source hitting a /128, one hitting a /64 and one matching nothing. Ratio columns:
//!   Palisade / LPM per packet kind, and Palisade's hit / miss.
//! - `net_bench gen N`: prints the N CIDRs (the same deterministic set), for nftables.
//! - `net_bench attach IFACE N PIN_ROOT`: attaches the Palisade firewall to IFACE with the N
//!   CIDRs denied, prints `ready`, and exits when stdin closes (leaving the pins for
//!   `palisade-noded cleanup --bpffs-root PIN_ROOT`).

use aya::Ebpf;
use aya::maps::lpm_trie::{Key, LpmTrie};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use palisade_noded::net::xdp::NetFirewall;
use palisade_policy::ir::Policy;
use palisade_policy::plan::{Enforced, NetPlan, compile_network};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;

/// The baseline (`bpf/bench/bench_lpm.bpf.c`), benchmark-only: not embedded in the daemon.
static LPM_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench/bench_lpm.bpf.o"));
static LPM6_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench/bench_lpm6.bpf.o"));

/// N distinct IPv6 prefixes of mixed lengths (40% /128, 20% /64, 15% /56, 15% /48, 7% /40,
/// 3% /32), under 2000::/3 (the benchmark's miss comes from fd00::/8).
fn cidrs6(n: usize) -> Vec<Ipv6Net> {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut out = BTreeSet::new();
    while out.len() < n {
        let r = rnd();
        let len = match r % 100 {
            0..40 => 128,
            40..60 => 64,
            60..75 => 56,
            75..90 => 48,
            90..97 => 40,
            _ => 32,
        };
        let hi = (rnd() & !(0xe000u64 << 48)) | (0x2000u64 << 48);
        let a = ((hi as u128) << 64) | rnd() as u128;
        out.insert(Ipv6Net::new(Ipv6Addr::from(a), len).unwrap().trunc());
    }
    out.into_iter().collect()
}

/// Ethernet + IPv6 + UDP to port 9.
fn packet6(src: Ipv6Addr) -> Vec<u8> {
    use palisade_policy::plan::frame::{self, L4};
    let dst: Ipv6Addr = "fd00:2::1".parse().unwrap();
    let l4 = L4::udp(40000, 9, &[0x5a; 18]);
    frame::ethernet(
        frame::TEST_DST_MAC,
        frame::TEST_SRC_MAC,
        &[],
        &frame::packet(src.into(), dst.into(), &[], &l4),
    )
}

/// N distinct IPv4 prefixes of mixed lengths (50% /32, 25% /24, 10% /28, 8% /20, 5% /16,
/// 2% /12), outside 10.0.0.0/8 and 240.0.0.0/4 (where the benchmark traffic comes from).
fn cidrs(n: usize) -> Vec<Ipv4Net> {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut out = BTreeSet::new();
    while out.len() < n {
        let r = rnd();
        let len = match r % 100 {
            0..50 => 32,
            50..75 => 24,
            75..85 => 28,
            85..93 => 20,
            93..98 => 16,
            _ => 12,
        };
        let a = (r >> 32) as u32;
        let first = a >> 24;
        if first == 10 || first == 0 || first >= 224 || first == 127 {
            continue;
        }
        out.insert(Ipv4Net::new(Ipv4Addr::from(a), len).unwrap().trunc());
    }
    out.into_iter().collect()
}

fn policy(nets: &[IpNet]) -> Policy {
    let mut p: Policy = serde_json::from_value(serde_json::json!({
        "ir_version": palisade_policy::ir::IR_VERSION, "name": "bench", "mode": "enforce",
        "network": { "rules": [{
            "id": 1, "name": "blocklist", "direction": "ingress", "action": "deny",
            "cidrs": [], "span": { "file": "bench", "line": 1, "col": 1 }
        }]}
    }))
    .expect("bench policy");
    p.network.rules[0].cidrs = nets.to_vec();
    p
}

fn plan(nets: &[Ipv4Net]) -> NetPlan {
    plan_any(&nets.iter().map(|n| IpNet::V4(*n)).collect::<Vec<_>>())
}

fn plan_any(nets: &[IpNet]) -> NetPlan {
    let p = policy(nets);
    compile_network(&[Enforced {
        policy: &p,
        revision: 1,
    }])
}

/// Ethernet + IPv4 + UDP to port 9, 60 bytes.
fn packet(src: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![0u8; 60];
    p[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    p[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    p[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut p[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&46u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&[192, 0, 2, 1]);
    let udp = &mut p[34..42];
    udp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&9u16.to_be_bytes());
    udp[4..6].copy_from_slice(&26u16.to_be_bytes());
    p
}

/// `BPF_PROG_TEST_RUN`: (average ns per run, return code).
fn test_run(prog_fd: RawFd, data: &[u8], repeat: u32) -> (u32, u32) {
    let (retval, ns) =
        palisade_noded::net::xdp::test_run(prog_fd, data, repeat).expect("BPF_PROG_TEST_RUN");
    (ns, retval)
}

/// A packet shape: its name, frames to run once first, the frame measured.
type Shape = (&'static str, Vec<Vec<u8>>, Vec<u8>);

/// Packets of other shapes, all from a source no rule covers (they pass).
fn shapes() -> Vec<Shape> {
    use palisade_policy::plan::frame::{self, Ext, L4};
    let eth = |l3: &[u8]| frame::ethernet(frame::TEST_DST_MAC, frame::TEST_SRC_MAC, &[], l3);
    let (s4, d4) = ("10.1.2.3".parse().unwrap(), "192.0.2.1".parse().unwrap());
    let (s6, d6) = ("fd00:1::3".parse().unwrap(), "fd00:2::1".parse().unwrap());
    let udp = L4::udp(40000, 9, &[0x5a; 1400]);
    let small = L4::udp(40000, 9, &[0x5a; 18]);
    let f4 = frame::fragments(s4, d4, 77, &[], &[], &udp, &[1000]);
    let ext2 = [Ext::HopByHop { len: 8 }, Ext::DstOpts { len: 8 }];
    vec![
        ("v4 plain", vec![], eth(&frame::packet(s4, d4, &[], &small))),
        ("v4 1st frag", vec![], eth(&f4[0])),
        ("v4 later frag", vec![eth(&f4[0])], eth(&f4[1])),
        ("v6 plain", vec![], eth(&frame::packet(s6, d6, &[], &small))),
        (
            "v6 2 ext hdrs",
            vec![],
            eth(&frame::packet(s6, d6, &ext2, &small)),
        ),
    ]
}

fn median(mut v: Vec<u32>) -> u32 {
    v.sort();
    v[v.len() / 2]
}

fn prog_cost(sizes: &[usize], repeat: u32) {
    let root = Path::new("/sys/fs/bpf/paln-bench-prog");
    println!(
        "{:>9} {:>7} {:>7} {:>7} | {:>10} {:>10} {:>10} | {:>10} {:>10} {:>10} | {:>6} {:>6} {:>6} {:>6}",
        "rules",
        "lens",
        "sets",
        "chunks",
        "pal /32",
        "pal /24",
        "pal miss",
        "lpm /32",
        "lpm /24",
        "lpm miss",
        "r/32",
        "r/24",
        "r miss",
        "hit/ms"
    );
    let mut shape_rows = Vec::new();
    for &n in sizes {
        let nets = cidrs(n);
        let host = nets
            .iter()
            .find(|c| c.prefix_len() == 32)
            .map(|c| c.network());
        let net24 = nets
            .iter()
            .find(|c| c.prefix_len() == 24)
            .map(|c| c.network());
        let miss = Ipv4Addr::new(10, 1, 2, 3);
        let pkts: Vec<(Option<Ipv4Addr>, u32)> = vec![(host, 1), (net24, 1), (Some(miss), 2)];

        // Palisade.
        let _ = palisade_noded::net::pinning::cleanup(root);
        std::fs::create_dir_all(root).unwrap();
        let mut fw = NetFirewall::load(root, "bench", 1000).expect("load");
        let pl = plan(&nets);
        fw.apply(&pl, 1).expect("apply");
        let fd = fw.program_fd(false).unwrap();
        let mut pal = Vec::new();
        for (src, want) in &pkts {
            pal.push(src.map(|s| {
                let d = packet(s);
                median(
                    (0..5)
                        .map(|_| {
                            let (ns, ret) = test_run(fd, &d, repeat);
                            assert_eq!(ret, *want, "palisade verdict for {s}");
                            ns
                        })
                        .collect(),
                )
            }));
        }
        let lens = pl.ingress.lens4.len();
        let sets = pl.sets.len();
        let chunks = pl.ingress.chunks4.len();
        let mut shape_costs = Vec::new();
        for (name, before, d) in shapes() {
            for b in &before {
                test_run(fd, b, 1);
            }
            let ns = median(
                (0..5)
                    .map(|_| {
                        let (ns, ret) = test_run(fd, &d, repeat);
                        assert_eq!(ret, 2, "palisade verdict for {name}");
                        ns
                    })
                    .collect(),
            );
            shape_costs.push((name, ns));
        }
        shape_rows.push((n, shape_costs));
        drop(fw);
        let _ = palisade_noded::net::pinning::cleanup(root);

        // LPM trie only.
        let mut ebpf = Ebpf::load(LPM_OBJECT).expect("load lpm");
        {
            let mut trie: LpmTrie<_, [u8; 4], u32> =
                LpmTrie::try_from(ebpf.map_mut("BENCH_LPM").unwrap()).unwrap();
            for c in &nets {
                trie.insert(&Key::new(c.prefix_len() as u32, c.network().octets()), 1, 0)
                    .unwrap();
            }
        }
        let prog: &mut aya::programs::Xdp =
            ebpf.program_mut("bench_lpm").unwrap().try_into().unwrap();
        palisade_noded::objects::load_retrying(|| prog.load()).unwrap();
        let lfd = prog.fd().unwrap().as_fd().as_raw_fd();
        let mut lpm = Vec::new();
        for (src, want) in &pkts {
            lpm.push(src.map(|s| {
                let d = packet(s);
                median(
                    (0..5)
                        .map(|_| {
                            let (ns, ret) = test_run(lfd, &d, repeat);
                            assert_eq!(ret, *want, "lpm verdict for {s}");
                            ns
                        })
                        .collect(),
                )
            }));
        }
        row(n, lens, sets, chunks, &pal, &lpm);
    }
    prog_cost6(sizes, repeat);
    // Other packet shapes (all pass: no rule covers their source), same program and maps.
    if let Some((_, first)) = shape_rows.first() {
        print!("\n{:>9} |", "rules");
        for (name, _) in first {
            print!(" {name:>14}");
        }
        println!();
        for (n, costs) in &shape_rows {
            print!("{n:>9} |");
            for (_, ns) in costs {
                print!(" {:>14}", format!("{ns} ns"));
            }
            println!();
        }
    }
}

fn ratio(a: &Option<u32>, b: &Option<u32>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if *b > 0 => format!("{:.2}", *a as f64 / *b as f64),
        _ => "-".into(),
    }
}

/// One table row: ns per packet kind (hit, hit, miss), Palisade then LPM, then the ratios.
fn row(n: usize, lens: usize, sets: usize, stage: usize, pal: &[Option<u32>], lpm: &[Option<u32>]) {
    let f = |v: &Option<u32>| v.map(|x| format!("{x} ns")).unwrap_or("-".into());
    println!(
        "{:>9} {:>7} {:>7} {:>7} | {:>10} {:>10} {:>10} | {:>10} {:>10} {:>10} | {:>6} {:>6} {:>6} {:>6}",
        n,
        lens,
        sets,
        stage,
        f(&pal[0]),
        f(&pal[1]),
        f(&pal[2]),
        f(&lpm[0]),
        f(&lpm[1]),
        f(&lpm[2]),
        ratio(&pal[0], &lpm[0]),
        ratio(&pal[1], &lpm[1]),
        ratio(&pal[2], &lpm[2]),
        ratio(&pal[0], &pal[2]),
    );
}

/// Median ns of 5 runs of `repeat` packets `d` through `fd`, checking the verdict.
fn cost(fd: RawFd, d: &[u8], repeat: u32, want: u32, what: &str) -> u32 {
    median(
        (0..5)
            .map(|_| {
                let (ns, ret) = test_run(fd, d, repeat);
                assert_eq!(ret, want, "verdict for {what}");
                ns
            })
            .collect(),
    )
}

/// The IPv6 table: a /128 hit, a /64 hit, a miss; Palisade beside the IPv6 LPM trie.
fn prog_cost6(sizes: &[usize], repeat: u32) {
    let root = Path::new("/sys/fs/bpf/paln-bench-prog");
    println!(
        "\n{:>9} {:>7} {:>7} {:>7} | {:>10} {:>10} {:>10} | {:>10} {:>10} {:>10} | {:>6} {:>6} {:>6} {:>6}",
        "v6 rules",
        "lens",
        "sets",
        "blocks",
        "pal /128",
        "pal /64",
        "pal miss",
        "lpm /128",
        "lpm /64",
        "lpm miss",
        "r/128",
        "r/64",
        "r miss",
        "hit/ms"
    );
    for &n in sizes {
        let nets = cidrs6(n);
        let pick = |len: u8| {
            nets.iter()
                .find(|c| c.prefix_len() == len)
                .map(|c| c.network())
        };
        let miss: Ipv6Addr = "fd00:1::3".parse().unwrap();
        let pkts: Vec<(Option<Ipv6Addr>, u32)> =
            vec![(pick(128), 1), (pick(64), 1), (Some(miss), 2)];

        let _ = palisade_noded::net::pinning::cleanup(root);
        std::fs::create_dir_all(root).unwrap();
        let mut fw = NetFirewall::load(root, "bench", 1000).expect("load");
        let all: Vec<IpNet> = nets.iter().map(|n| IpNet::V6(*n)).collect();
        let pl = plan_any(&all);
        fw.apply(&pl, 1).expect("apply");
        let fd = fw.program_fd(false).unwrap();
        let pal: Vec<Option<u32>> = pkts
            .iter()
            .map(|(src, want)| src.map(|s| cost(fd, &packet6(s), repeat, *want, &s.to_string())))
            .collect();
        let (lens, sets, blocks) = (
            pl.ingress.lens6.len(),
            pl.sets.len(),
            pl.ingress.blocks6.len(),
        );
        drop(fw);
        let _ = palisade_noded::net::pinning::cleanup(root);

        let mut ebpf = Ebpf::load(LPM6_OBJECT).expect("load lpm6");
        {
            let mut trie: LpmTrie<_, [u8; 16], u32> =
                LpmTrie::try_from(ebpf.map_mut("BENCH_LPM6").unwrap()).unwrap();
            for c in &nets {
                trie.insert(&Key::new(c.prefix_len() as u32, c.network().octets()), 1, 0)
                    .unwrap();
            }
        }
        let prog: &mut aya::programs::Xdp =
            ebpf.program_mut("bench_lpm6").unwrap().try_into().unwrap();
        palisade_noded::objects::load_retrying(|| prog.load()).unwrap();
        let lfd = prog.fd().unwrap().as_fd().as_raw_fd();
        let lpm: Vec<Option<u32>> = pkts
            .iter()
            .map(|(src, want)| src.map(|s| cost(lfd, &packet6(s), repeat, *want, &s.to_string())))
            .collect();
        row(n, lens, sets, blocks, &pal, &lpm);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(|s| s.as_str()) {
        Some("prog-cost") => {
            let sizes: Vec<usize> = args
                .get(2)
                .map(|s| s.split(',').map(|x| x.parse().unwrap()).collect())
                .unwrap_or(vec![1, 1000, 100_000, 1_000_000]);
            let repeat = args.get(3).map(|s| s.parse().unwrap()).unwrap_or(200_000);
            prog_cost(&sizes, repeat);
        }
        Some("gen") => {
            for c in cidrs(args[2].parse().unwrap()) {
                println!("{c}");
            }
        }
        Some("attach") => {
            let iface = &args[2];
            let nets = cidrs(args[3].parse().unwrap());
            let root = Path::new(&args[4]);
            let mut fw = NetFirewall::attach(iface, root, 1000).expect("attach");
            fw.apply(&plan(&nets), 1).expect("apply");
            println!(
                "ready: xdp {} on {iface}, {} prefixes",
                fw.xdp.mode,
                nets.len()
            );
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
        }
        _ => {
            eprintln!(
                "usage: net_bench prog-cost [SIZES] [REPEAT] | gen N | attach IFACE N PIN_ROOT"
            );
            std::process::exit(2);
        }
    }
}
