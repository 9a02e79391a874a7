//! Policy unit tests: events, expected verdicts, and their evaluation against the *compiled
//! plan* with the datapath's lookup semantics (`plan::*::decide*`).
//!
//! ## Case-file format (`*.cases`)
//!
//! One case per line: `EVENT => EXPECTED`. Blank lines and lines starting with `#` are
//! ignored. Events (the same syntax `palisadectl explain --event` takes):
//!
//! ```text
//! net DIRECTION PROTO SRC -> DST[:PORT] [Q..] net ingress tcp 203.0.113.5 -> 10.0.0.1:22
//!                                             net egress udp 10.0.0.1 -> [2001:db8::1]:53
//!                                             net ingress icmp 198.51.100.7 -> 10.0.0.1
//!                                             net ingress tcp 2001:db8::5 -> [2001:db8::1]:22 ext=hbh,dstopt
//! file OP PATH [by BINARY] [uid N]            file read /etc/shadow by /usr/bin/cat uid 1000
//! exec BINARY [by PARENT] [uid N]             exec /usr/bin/nc by /usr/bin/bash uid 1000
//! syscall PROFILE NAME [ARG0 .. ARG5]         syscall web-default socket 10
//! sched BINARY [name COMM] [uid N] [cgroup P] sched /usr/bin/backup name backup uid 0
//! ```
//!
//! `PROTO` is `tcp`, `udp`, `icmp`, `icmpv6` or a protocol number; syscall arguments are
//! decimal or `0x` hex; `by` defaults to `/usr/bin/bash` and `uid` to 1000.
//!
//! A network event is turned into the Ethernet frame the datapath would see (a TCP SYN, a
//! UDP datagram, an echo request) and decided as the datapath reads that frame
//! ([`crate::plan::net::frame`]). Qualifiers shape the frame:
//!
//! - `frag=first` (the first fragment of a datagram: decided by its ports, as the later
//!   ones then are), `frag=later` (a later fragment whose first fragment was not seen: no
//!   ports), `frag=short` (a first fragment too short to carry the ports);
//! - `ext=LIST` (IPv6): extension headers in order, from `hbh`, `dstopt`, `rh0`, `srh`,
//!   `frag` (an atomic fragment), `ah`; `NAME*N` repeats one; a final `truncated` cuts the
//!   frame inside the last header. More than 8 headers is beyond what the datapath walks;
//! - `vlan=N`: N 802.1Q/802.1ad tags (more than 2: the frame cannot be read).
//!
//! Expected verdicts:
//!
//! ```text
//! net, file, exec:  allow | deny | audit   [rule NAME | rule none]
//! syscall:          allow | kill | log | trap | errno N   [rule N | rule default]
//! sched:            CLASS | none
//! ```
//!
//! `rule NAME` also checks which rule decided (`none`: no rule, i.e. the default allow);
//! without it only the action is checked. For syscalls `rule N` is the 0-based index of the
//! profile's rule and `rule default` the default action.

use crate::diagnostic::{Diagnostic, Span};
use crate::ir::{Action, Direction, FileOp, Policy, SeccompAction};
use crate::plan::files::{ExecEvent, FileEvent, FilePlan, compile_files};
use crate::plan::frame::{self, Ext, L4};
use crate::plan::sched::{Process, SchedPlan, compile_sched};
use crate::plan::seccomp::{SeccompPlan, action_text, compile_seccomp, decide_syscall};
use crate::plan::{Enforced, NetPlan, Packet, compile_network};
use crate::syscalls;
use std::net::IpAddr;

/// A network event: the packet described and the frame built from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetEvent {
    /// As described (fully read, before any qualifier).
    pub packet: Packet,
    /// The Ethernet frame the datapath would see.
    pub frame: Vec<u8>,
    /// The qualifiers as written (`frag=later ext=hbh`), for display.
    pub qualifiers: String,
}

/// One event to decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Net(NetEvent),
    File(FileEvent),
    Exec(ExecEvent),
    Syscall {
        profile: String,
        name: String,
        nr: u32,
        args: [u64; 6],
    },
    Sched(Process),
}

/// What a case expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Network, file and exec: an action, and optionally the deciding rule (`Some(None)`:
    /// no rule).
    Action {
        action: Action,
        rule: Option<Option<String>>,
    },
    /// Syscall: an action, and optionally the deciding rule index (`Some(None)`: default).
    Syscall {
        action: SeccompAction,
        rule: Option<Option<usize>>,
    },
    /// Sched: a class name or `None`.
    Class(Option<String>),
}

/// One line of a case file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub line: u32,
    pub text: String,
    pub event: Event,
    pub expect: Expect,
}

/// Every plan of one policy set, compiled once.
pub struct Plans {
    pub net: NetPlan,
    pub files: FilePlan,
    pub seccomp: SeccompPlan,
    pub sched: SchedPlan,
}

impl Plans {
    /// The plans a node selecting exactly `policies` would install.
    pub fn compile(policies: &[Enforced<'_>]) -> Self {
        Plans {
            net: compile_network(policies),
            files: compile_files(policies),
            seccomp: compile_seccomp(policies),
            sched: compile_sched(policies),
        }
    }

    /// The plans of one policy (revision 0).
    pub fn of(policy: &Policy) -> Self {
        Plans::compile(&[Enforced {
            policy,
            revision: 0,
        }])
    }
}

/// The decision for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `deny`, `errno 1`, `batch`, `none`, ...
    pub verdict: String,
    /// The deciding rule's name (net/file/exec), rule index (syscall) or class.
    pub rule: Option<String>,
    /// Why, in one or two sentences.
    pub reason: String,
    /// Machine-comparable parts.
    action: Option<Action>,
    seccomp: Option<(SeccompAction, Option<usize>)>,
    class: Option<Option<String>>,
}

/// A case's result.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub case: Case,
    pub outcome: Outcome,
    pub passed: bool,
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not an IPv4 or IPv6 address"))
}

/// `ADDR`, `ADDR:PORT`, `[V6]`, `[V6]:PORT`, bare `V6`.
fn parse_endpoint(s: &str) -> Result<(IpAddr, Option<u16>), String> {
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("{p:?} is not a port (0..=65535)"))
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (addr, tail) = rest
            .split_once(']')
            .ok_or_else(|| format!("{s:?}: missing ']'"))?;
        let p = match tail.strip_prefix(':') {
            Some(p) => Some(port(p)?),
            None if tail.is_empty() => None,
            None => return Err(format!("{s:?}: expected ':PORT' after ']'")),
        };
        return Ok((parse_ip(addr)?, p));
    }
    if s.matches(':').count() == 1 {
        let (a, p) = s.split_once(':').unwrap_or((s, ""));
        return Ok((parse_ip(a)?, Some(port(p)?)));
    }
    Ok((parse_ip(s)?, None))
}

fn parse_num(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => match s.strip_prefix('-') {
            Some(n) => n.parse::<u64>().map(|v| (v as i64).wrapping_neg() as u64),
            None => s.parse(),
        },
    };
    r.map_err(|_| format!("{s:?} is not a number"))
}

/// Optional `key value` pairs after the positional words.
fn options<'a>(words: &[&'a str], keys: &[&str]) -> Result<Vec<(&'a str, &'a str)>, String> {
    if !words.len().is_multiple_of(2) {
        return Err(format!(
            "expected `key value` pairs ({}) after the event, found {:?}",
            keys.join(", "),
            words.join(" ")
        ));
    }
    words
        .chunks(2)
        .map(|kv| {
            if keys.contains(&kv[0]) {
                Ok((kv[0], kv[1]))
            } else {
                Err(format!(
                    "unknown option {:?}; expected one of: {}",
                    kv[0],
                    keys.join(", ")
                ))
            }
        })
        .collect()
}

fn uid(s: &str) -> Result<u32, String> {
    s.parse().map_err(|_| format!("{s:?} is not a uid"))
}

fn abs(s: &str) -> Result<String, String> {
    if s.starts_with('/') {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not an absolute path"))
    }
}

/// How a network event's frame is shaped (its qualifiers).
#[derive(Debug, Default)]
struct Shape {
    frag: Option<&'static str>,
    ext: Vec<Ext>,
    truncated: bool,
    vlan: usize,
}

fn parse_shape(quals: &[&str], v6: bool) -> Result<Shape, String> {
    let mut s = Shape::default();
    for q in quals {
        let Some((k, v)) = q.split_once('=') else {
            return Err(format!(
                "unknown qualifier {q:?}; expected frag=first|later|short, ext=LIST or vlan=N"
            ));
        };
        match k {
            "frag" => {
                s.frag = Some(match v {
                    "first" => "first",
                    "later" => "later",
                    "short" => "short",
                    o => return Err(format!("frag={o:?}: expected first, later or short")),
                })
            }
            "ext" => {
                if !v6 {
                    return Err("ext= describes IPv6 extension headers: use IPv6 addresses".into());
                }
                let items: Vec<&str> = v.split(',').collect();
                for (i, item) in items.iter().enumerate() {
                    if *item == "truncated" {
                        if i + 1 != items.len() || i == 0 {
                            return Err("`truncated` comes last, after at least one header".into());
                        }
                        s.truncated = true;
                        continue;
                    }
                    let (name, n) = match item.split_once('*') {
                        Some((name, n)) => (
                            name,
                            n.parse::<usize>()
                                .ok()
                                .filter(|n| (1..=64).contains(n))
                                .ok_or_else(|| format!("{item:?}: repeat 1 to 64 times"))?,
                        ),
                        None => (*item, 1),
                    };
                    let e = match name {
                        "hbh" => Ext::HopByHop { len: 8 },
                        "dstopt" => Ext::DstOpts { len: 8 },
                        "rh0" => Ext::Rh0,
                        "srh" => Ext::Srh,
                        "ah" => Ext::Ah { len: 16 },
                        "frag" => Ext::Fragment {
                            id: 0x5041,
                            offset: 0,
                            more: false,
                        },
                        o => {
                            return Err(format!(
                                "extension header {o:?}: expected hbh, dstopt, rh0, srh, frag or ah"
                            ));
                        }
                    };
                    s.ext.extend(std::iter::repeat_n(e, n));
                }
            }
            "vlan" => {
                s.vlan = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n <= 4)
                    .ok_or_else(|| format!("vlan={v:?}: expected 0 to 4 tags"))?;
            }
            o => {
                return Err(format!(
                    "unknown qualifier {o:?}; expected frag=, ext= or vlan="
                ));
            }
        }
    }
    if s.truncated && s.frag.is_some() {
        return Err("`truncated` and frag= do not combine".into());
    }
    Ok(s)
}

impl Shape {
    fn frame(&self, p: &Packet) -> Vec<u8> {
        let v6 = p.src.is_ipv6();
        let l4 = match p.protocol {
            6 => L4::tcp_syn(40000, p.dst_port),
            17 => L4::udp(40000, p.dst_port, b"palisade"),
            1 | 58 => L4::echo(0x5041, 1, v6),
            proto => L4::Raw {
                proto,
                data: vec![0; 8],
            },
        };
        let l3 = match self.frag {
            None => frame::packet(p.src, p.dst, &self.ext, &l4),
            Some(kind) => {
                let short_pad = [Ext::DstOpts { len: 8 }];
                let (post, cuts): (&[Ext], Vec<usize>) = match (kind, v6) {
                    ("short", true) => (&short_pad, vec![8]),
                    ("short", false) => (&[], vec![0]),
                    _ => (&[], vec![8]),
                };
                let ext: &[Ext] = if v6 { &self.ext } else { &[] };
                let pieces = frame::fragments(p.src, p.dst, 0x5041, ext, post, &l4, &cuts);
                let i = usize::from(kind == "later");
                pieces[i.min(pieces.len() - 1)].clone()
            }
        };
        let mut l3 = l3;
        if self.truncated {
            // Cut inside the last extension header: one byte of it is left.
            let chain: usize = frame::chain_bytes(&self.ext, 0, p.dst).len();
            let last = frame::chain_bytes(&self.ext[self.ext.len() - 1..], 0, p.dst).len();
            l3.truncate(40 + chain - last + 1);
        }
        let tags: Vec<u16> = (0..self.vlan)
            .map(|i| {
                if i == 0 && self.vlan > 1 {
                    frame::TPID_8021AD
                } else {
                    frame::TPID_8021Q
                }
            })
            .collect();
        frame::ethernet(frame::TEST_DST_MAC, frame::TEST_SRC_MAC, &tags, &l3)
    }
}

/// Parses an event (see the module docs).
pub fn parse_event(text: &str) -> Result<Event, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let Some((&kind, rest)) = words.split_first() else {
        return Err("empty event".into());
    };
    match kind {
        "net" => {
            let [dir, proto, src, arrow, dst, quals @ ..] = rest else {
                return Err("expected: net DIRECTION PROTO SRC -> DST[:PORT] [QUALIFIERS]".into());
            };
            if *arrow != "->" {
                return Err(format!("expected '->' between addresses, found {arrow:?}"));
            }
            let direction = match *dir {
                "ingress" => Direction::Ingress,
                "egress" => Direction::Egress,
                d => return Err(format!("direction {d:?} is not ingress or egress")),
            };
            let protocol = match *proto {
                "tcp" => 6,
                "udp" => 17,
                "icmp" => 1,
                "icmpv6" => 58,
                n => n.parse().map_err(|_| {
                    format!("protocol {n:?} is not tcp, udp, icmp, icmpv6 or a number")
                })?,
            };
            let (src, _) = parse_endpoint(src)?;
            let (dst, port) = parse_endpoint(dst)?;
            if src.is_ipv4() != dst.is_ipv4() {
                return Err("source and destination are of different address families".into());
            }
            if matches!(protocol, 6 | 17) && port.is_none() {
                return Err("a tcp or udp event needs a destination port: DST:PORT".into());
            }
            let packet = Packet::new(direction, src, dst, protocol, port.unwrap_or(0));
            let shape = parse_shape(quals, src.is_ipv6())?;
            Ok(Event::Net(NetEvent {
                frame: shape.frame(&packet),
                packet,
                qualifiers: quals.join(" "),
            }))
        }
        "file" => {
            let [op, path, opts @ ..] = rest else {
                return Err("expected: file OP PATH [by BINARY] [uid N]".into());
            };
            let op = match *op {
                "read" => FileOp::Read,
                "write" => FileOp::Write,
                "exec" => FileOp::Exec,
                o => return Err(format!("operation {o:?} is not read, write or exec")),
            };
            let mut ev = FileEvent {
                path: abs(path)?,
                op,
                binary: "/usr/bin/bash".into(),
                uid: 1000,
            };
            for (k, v) in options(opts, &["by", "uid"])? {
                match k {
                    "by" => ev.binary = abs(v)?,
                    _ => ev.uid = uid(v)?,
                }
            }
            Ok(Event::File(ev))
        }
        "exec" => {
            let [binary, opts @ ..] = rest else {
                return Err("expected: exec BINARY [by PARENT] [uid N]".into());
            };
            let mut ev = ExecEvent {
                binary: abs(binary)?,
                uid: 1000,
                parent: "/usr/bin/bash".into(),
            };
            for (k, v) in options(opts, &["by", "uid"])? {
                match k {
                    "by" => ev.parent = abs(v)?,
                    _ => ev.uid = uid(v)?,
                }
            }
            Ok(Event::Exec(ev))
        }
        "syscall" => {
            let [profile, name, args @ ..] = rest else {
                return Err("expected: syscall PROFILE NAME [ARG0 .. ARG5]".into());
            };
            let nr =
                syscalls::number(name).ok_or_else(|| {
                    match crate::diagnostic::did_you_mean(name, syscalls::names()) {
                        Some(m) => format!("unknown syscall {name:?}; did you mean {m:?}?"),
                        None => format!("unknown syscall {name:?}"),
                    }
                })?;
            if args.len() > 6 {
                return Err("a syscall has at most 6 arguments".into());
            }
            let mut a = [0u64; 6];
            for (i, s) in args.iter().enumerate() {
                a[i] = parse_num(s)?;
            }
            Ok(Event::Syscall {
                profile: profile.to_string(),
                name: name.to_string(),
                nr,
                args: a,
            })
        }
        "sched" => {
            let [binary, opts @ ..] = rest else {
                return Err("expected: sched BINARY [name COMM] [uid N] [cgroup PATH]".into());
            };
            let binary = abs(binary)?;
            let mut p = Process {
                name: binary
                    .rsplit('/')
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(15)
                    .collect(),
                binary,
                uid: 1000,
                cgroup: "/".into(),
            };
            for (k, v) in options(opts, &["name", "uid", "cgroup"])? {
                match k {
                    "name" => p.name = v.to_string(),
                    "uid" => p.uid = uid(v)?,
                    _ => p.cgroup = abs(v)?,
                }
            }
            Ok(Event::Sched(p))
        }
        other => Err(format!(
            "unknown event kind {other:?}; expected net, file, exec, syscall or sched"
        )),
    }
}

fn parse_action(s: &str) -> Result<Action, String> {
    match s {
        "allow" => Ok(Action::Allow),
        "deny" => Ok(Action::Deny),
        "audit" => Ok(Action::Audit),
        o => Err(format!("expected allow, deny or audit, found {o:?}")),
    }
}

fn parse_expect(event: &Event, text: &str) -> Result<Expect, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    match event {
        Event::Net(_) | Event::File(_) | Event::Exec(_) => match words.as_slice() {
            [a] => Ok(Expect::Action {
                action: parse_action(a)?,
                rule: None,
            }),
            [a, "rule", r] => Ok(Expect::Action {
                action: parse_action(a)?,
                rule: Some((*r != "none").then(|| r.to_string())),
            }),
            _ => Err("expected: allow|deny|audit [rule NAME|none]".into()),
        },
        Event::Syscall { .. } => {
            let (action, rest) = match words.as_slice() {
                ["errno", n, rest @ ..] => (
                    SeccompAction::Errno(n.parse().map_err(|_| format!("{n:?} is not an errno"))?),
                    rest,
                ),
                ["allow", rest @ ..] => (SeccompAction::Allow, rest),
                ["kill", rest @ ..] => (SeccompAction::Kill, rest),
                ["log", rest @ ..] => (SeccompAction::Log, rest),
                ["trap", rest @ ..] => (SeccompAction::Trap, rest),
                _ => return Err("expected: allow|kill|log|trap|errno N [rule N|default]".into()),
            };
            let rule = match rest {
                [] => None,
                ["rule", "default"] => Some(None),
                ["rule", n] => Some(Some(
                    n.parse()
                        .map_err(|_| format!("{n:?} is not a rule index"))?,
                )),
                _ => return Err("expected: [rule N|rule default] after the action".into()),
            };
            Ok(Expect::Syscall { action, rule })
        }
        Event::Sched(_) => match words.as_slice() {
            ["none"] => Ok(Expect::Class(None)),
            [c] => Ok(Expect::Class(Some(c.to_string()))),
            _ => Err("expected a class name or none".into()),
        },
    }
}

/// Parses a case file. Every bad line is reported (file:line:col).
pub fn parse_cases(file: &str, text: &str) -> Result<Vec<Case>, Vec<Diagnostic>> {
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i as u32 + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let col = (raw.len() - raw.trim_start().len()) as u32 + 1;
        let span = Span::new(file, line, col);
        let Some((ev, exp)) = trimmed.split_once("=>") else {
            errors.push(
                Diagnostic::error(span, "a case needs `=>` and the expected verdict")
                    .with_hint("write e.g. `net ingress tcp 203.0.113.5 -> 10.0.0.1:22 => deny`"),
            );
            continue;
        };
        let parsed = parse_event(ev).and_then(|event| {
            let expect = parse_expect(&event, exp)?;
            Ok((event, expect))
        });
        match parsed {
            Ok((event, expect)) => cases.push(Case {
                line,
                text: trimmed.to_string(),
                event,
                expect,
            }),
            Err(e) => errors.push(
                Diagnostic::error(span, e)
                    .with_hint("see the case format in docs/policy-language.md"),
            ),
        }
    }
    if errors.is_empty() {
        Ok(cases)
    } else {
        Err(errors)
    }
}

/// Decides `event` against `plans`.
pub fn evaluate(plans: &Plans, event: &Event) -> Outcome {
    match event {
        Event::Net(ev) => {
            let v = plans.net.decide_frame(&ev.frame, ev.packet.direction);
            let rule = v.rule.as_ref().map(|r| r.rule_name.clone());
            let mut reason = match &v.rule {
                _ if v.unexamined => {
                    "neighbor discovery and non-IP frames pass unexamined".to_string()
                }
                Some(r) if v.unread == Some(frame::Unread::BadHeader) => format!(
                    "no address to look up: the direction's strictest rule {:?} of policy {:?} (id {}) applies",
                    r.rule_name, r.policy, r.rule_id
                ),
                Some(r) => format!(
                    "rule {:?} of policy {:?} (id {}) decides: the longest matching prefix, then the stricter action",
                    r.rule_name, r.policy, r.rule_id
                ),
                None => "no rule matches and no default is set: allowed".into(),
            };
            if let Some(u) = v.unread {
                reason.push_str(&format!(
                    "; the datapath cannot read it in full ({}: {}), so it fails closed: deny and audit rules with a protocol or port condition match it, allow rules with one do not",
                    u.as_str(),
                    u.describe()
                ));
            }
            Outcome {
                verdict: v.action.as_str().into(),
                rule,
                reason,
                action: Some(v.action),
                seccomp: None,
                class: None,
            }
        }
        Event::File(ev) => file_outcome(plans.files.decide_file(ev)),
        Event::Exec(ev) => file_outcome(plans.files.decide_exec(ev)),
        Event::Syscall {
            profile,
            name,
            nr,
            args,
        } => match plans.seccomp.profile(profile) {
            None => Outcome {
                verdict: "no such profile".into(),
                rule: None,
                reason: format!(
                    "the policy has no seccomp profile {profile:?} (it has: {})",
                    plans
                        .seccomp
                        .profiles
                        .iter()
                        .map(|p| p.profile.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                action: None,
                seccomp: None,
                class: None,
            },
            Some(p) => {
                let v = decide_syscall(&p.profile, *nr, args);
                let reason = match v.rule {
                    Some(i) => format!(
                        "rule {i} of profile {:?} (at {}) is the first that lists {name} and whose comparisons hold",
                        p.profile.name, p.profile.rules[i].span
                    ),
                    None => format!(
                        "no rule of profile {:?} matches {name}: the default action applies",
                        p.profile.name
                    ),
                };
                Outcome {
                    verdict: action_text(v.action),
                    rule: Some(v.rule.map_or("default".into(), |i| i.to_string())),
                    reason,
                    action: None,
                    seccomp: Some((v.action, v.rule)),
                    class: None,
                }
            }
        },
        Event::Sched(p) => match plans.sched.classify(p) {
            Some((c, by)) => Outcome {
                verdict: c.class.name.clone(),
                rule: Some(c.class.name.clone()),
                reason: format!(
                    "class {:?} of policy {:?} is the first whose matchers hold ({by})",
                    c.class.name, c.policy
                ),
                action: None,
                seccomp: None,
                class: Some(Some(c.class.name.clone())),
            },
            None => Outcome {
                verdict: "none".into(),
                rule: None,
                reason: "no scheduler class matches: the process keeps the node's defaults".into(),
                action: None,
                seccomp: None,
                class: Some(None),
            },
        },
    }
}

fn file_outcome(v: crate::plan::files::FileVerdict) -> Outcome {
    Outcome {
        verdict: v.action.as_str().into(),
        rule: v.rule.as_ref().map(|r| r.rule_name.clone()),
        reason: v.reason,
        action: Some(v.action),
        seccomp: None,
        class: None,
    }
}

fn passes(expect: &Expect, o: &Outcome) -> bool {
    match expect {
        Expect::Action { action, rule } => {
            o.action == Some(*action) && rule.as_ref().is_none_or(|r| *r == o.rule)
        }
        Expect::Syscall { action, rule } => o
            .seccomp
            .is_some_and(|(a, r)| a == *action && rule.is_none_or(|want| want == r)),
        Expect::Class(c) => o.class.as_ref() == Some(c),
    }
}

/// Runs every case against `plans`.
pub fn run(plans: &Plans, cases: &[Case]) -> Vec<CaseResult> {
    cases
        .iter()
        .map(|c| {
            let outcome = evaluate(plans, &c.event);
            CaseResult {
                passed: passes(&c.expect, &outcome),
                case: c.clone(),
                outcome,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile;

    const POLICY: &str = r#"policy("t");
network().ingress().deny("203.0.113.0/24").named("bad");
files().deny_read("/etc/shadow").except_uid(0).named("shadow");
exec().deny(["/usr/bin/nc"]).named("no-nc");
seccomp("p").default_allow().deny(["mkdir"]).errno_where("socket", 97, [[0, "eq", 10]]);
sched_class("batch").policy("batch").binaries(["/usr/bin/backup"]);
"#;

    const CASES: &str = r#"
# comment
net ingress tcp 203.0.113.5 -> 10.0.0.1:22 => deny rule bad
net ingress udp 198.51.100.1 -> 10.0.0.1:53 => allow rule none
net ingress icmp 203.0.113.9 -> 10.0.0.1 => deny
file read /etc/shadow by /usr/bin/cat uid 1000 => deny rule shadow
file read /etc/shadow uid 0 => allow rule shadow
exec /usr/bin/nc => deny rule no-nc
syscall p mkdir => errno 1 rule 0
syscall p socket 10 => errno 97 rule 1
syscall p socket 0x2 => allow rule default
sched /usr/bin/backup => batch
sched /usr/bin/ls uid 0 => none
"#;

    #[test]
    fn cases_pass_against_the_plan() {
        let p = compile("t.rhai", POLICY).unwrap();
        let cases = parse_cases("t.cases", CASES).unwrap();
        assert_eq!(cases.len(), 11);
        let results = run(&Plans::of(&p), &cases);
        for r in &results {
            assert!(
                r.passed,
                "line {}: {} got {:?}",
                r.case.line, r.case.text, r.outcome
            );
        }
    }

    #[test]
    fn failing_case_is_reported() {
        let p = compile("t.rhai", POLICY).unwrap();
        let cases = parse_cases(
            "t.cases",
            "exec /usr/bin/nc => allow\nexec /usr/bin/nc => deny rule other\n",
        )
        .unwrap();
        let results = run(&Plans::of(&p), &cases);
        assert!(results.iter().all(|r| !r.passed));
    }

    #[test]
    fn bad_lines_are_all_reported_with_positions() {
        let errs = parse_cases(
            "t.cases",
            "net ingress tcp 1.2.3.4 -> 5.6.7.8 => deny\n  file read etc => deny\nsyscall p mkdri => allow\nexec /x\n",
        )
        .unwrap_err();
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert_eq!((errs[1].span.line, errs[1].span.col), (2, 3));
        assert!(
            errs[2].message.contains("did you mean \"mkdir\""),
            "{}",
            errs[2].message
        );
    }

    #[test]
    fn network_qualifiers_shape_the_frame() {
        let p = compile(
            "t.rhai",
            r#"policy("q");
network().ingress().deny("any").tcp().ports(22).named("no-ssh");
network().ingress().allow_udp(53).named("dns");
network().ingress().default_action("deny");"#,
        )
        .unwrap();
        let cases = parse_cases(
            "t.cases",
            "net ingress tcp 198.51.100.1 -> 10.0.0.1:22 frag=first => deny rule no-ssh
net ingress tcp 198.51.100.1 -> 10.0.0.1:22 frag=short => deny rule no-ssh
net ingress tcp 198.51.100.1 -> 10.0.0.1:443 frag=later => deny rule no-ssh
net ingress udp 198.51.100.1 -> 10.0.0.1:53 frag=first => allow rule dns
net ingress udp 198.51.100.1 -> 10.0.0.1:53 frag=later => deny rule default-ingress
net ingress udp 2001:db8::1 -> [2001:db8::2]:53 ext=hbh,rh0,srh,ah,frag,dstopt => allow rule dns
net ingress udp 2001:db8::1 -> [2001:db8::2]:53 ext=dstopt*8 => allow rule dns
net ingress udp 2001:db8::1 -> [2001:db8::2]:53 ext=dstopt*9 => deny rule no-ssh
net ingress udp 2001:db8::1 -> [2001:db8::2]:53 ext=hbh,dstopt,truncated => deny rule no-ssh
net ingress udp 2001:db8::1 -> [2001:db8::2]:53 frag=short => deny rule default-ingress
net ingress udp 198.51.100.1 -> 10.0.0.1:53 vlan=2 => allow rule dns
net ingress udp 198.51.100.1 -> 10.0.0.1:53 vlan=3 => deny rule no-ssh
",
        )
        .unwrap();
        let results = run(&Plans::of(&p), &cases);
        for r in &results {
            assert!(
                r.passed,
                "line {}: {} got {:?}",
                r.case.line, r.case.text, r.outcome
            );
        }
        let later = results
            .iter()
            .find(|r| r.case.text.contains(":443 frag=later"))
            .unwrap();
        assert!(
            later.outcome.reason.contains("fragment-untracked"),
            "{}",
            later.outcome.reason
        );
        for (bad, what) in [
            ("frag=middle", "first, later or short"),
            ("ext=hbh", "IPv6"),
            ("ext=dstopt*0", "repeat"),
            ("ext=jumbo", "expected hbh"),
            ("ext=truncated", "comes last"),
            ("vlan=9", "0 to 4"),
            ("color=red", "unknown qualifier"),
            ("frag", "unknown qualifier"),
        ] {
            let event = if what == "IPv6" {
                "net ingress udp 198.51.100.1 -> 10.0.0.1:53"
            } else {
                "net ingress udp 2001:db8::1 -> [2001:db8::2]:53"
            };
            let e = parse_cases("t.cases", &format!("{event} {bad} => allow\n")).unwrap_err();
            assert!(e[0].message.contains(what), "{bad}: {}", e[0].message);
        }
    }

    #[test]
    fn endpoints() {
        assert_eq!(parse_endpoint("[2001:db8::1]:443").unwrap().1, Some(443));
        assert_eq!(parse_endpoint("2001:db8::1").unwrap().1, None);
        assert_eq!(parse_endpoint("10.0.0.1:80").unwrap().1, Some(80));
        assert!(parse_endpoint("10.0.0.1:99999").is_err());
    }
}
