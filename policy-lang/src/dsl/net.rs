//! `network()`: ingress/egress rules on CIDRs, protocols and ports, default actions per
//! direction and per-source rate limits.

use super::values::{ints, items};
use super::{Collector, Last, Shared};
use crate::diagnostic::did_you_mean;
use crate::ir::{Action, Direction, NetRule, PortRange, Protocol, RateLimit};
use ipnet::IpNet;
use rhai::{Dynamic, Engine, NativeCallContext, Position};

/// Handle returned by `network()`, `.ingress()`, `.egress()` and rule calls.
#[derive(Clone)]
pub(crate) struct NetworkHandle {
    direction: Option<Direction>,
    /// What the previous call added: net rules (`Rules`) or a rate limit (`rate`).
    last: Last,
    rate: Option<usize>,
}

impl NetworkHandle {
    fn with(&self, last: Last, rate: Option<usize>) -> Self {
        NetworkHandle {
            direction: self.direction,
            last,
            rate,
        }
    }
}

pub(crate) fn register(engine: &mut Engine, shared: &Shared) {
    engine.register_type_with_name::<NetworkHandle>("Network");
    engine.register_fn("network", || NetworkHandle {
        direction: None,
        last: Last::None,
        rate: None,
    });
    engine.register_fn("ingress", |_: &mut NetworkHandle| NetworkHandle {
        direction: Some(Direction::Ingress),
        last: Last::None,
        rate: None,
    });
    engine.register_fn("egress", |_: &mut NetworkHandle| NetworkHandle {
        direction: Some(Direction::Egress),
        last: Last::None,
        rate: None,
    });
    for (fname, action) in [
        ("deny", Action::Deny),
        ("allow", Action::Allow),
        ("audit", Action::Audit),
    ] {
        let s = shared.clone();
        engine.register_fn(
            fname,
            move |ctx: NativeCallContext, n: &mut NetworkHandle, cidrs: Dynamic| {
                let mut c = s.borrow_mut();
                add_rule(&mut c, ctx.call_position(), n, fname, action, cidrs)
            },
        );
    }
    for (fname, proto) in [("allow_tcp", Protocol::Tcp), ("allow_udp", Protocol::Udp)] {
        let s = shared.clone();
        engine.register_fn(
            fname,
            move |ctx: NativeCallContext, n: &mut NetworkHandle, ports: Dynamic| {
                let mut c = s.borrow_mut();
                let h = add_rule(
                    &mut c,
                    ctx.call_position(),
                    n,
                    fname,
                    Action::Allow,
                    Dynamic::from("any"),
                );
                if let Last::Rules(idx) = &h.last {
                    let span = c.span(ctx.call_position());
                    let i = idx[0];
                    c.net[i].protocol = proto;
                    if let Ok(p) = parse_ports(&mut c, &span, ports) {
                        c.net[i].ports = p;
                    }
                }
                h
            },
        );
    }
    for (fname, proto) in [
        ("tcp", Protocol::Tcp),
        ("udp", Protocol::Udp),
        ("icmp", Protocol::Icmp),
        ("any_protocol", Protocol::Any),
    ] {
        let s = shared.clone();
        engine.register_fn(
            fname,
            move |ctx: NativeCallContext, n: &mut NetworkHandle| {
                let mut c = s.borrow_mut();
                set_protocol(&mut c, ctx.call_position(), n, fname, proto);
                n.clone()
            },
        );
    }
    let s = shared.clone();
    engine.register_fn(
        "protocol",
        move |ctx: NativeCallContext, n: &mut NetworkHandle, name: &str| {
            let mut c = s.borrow_mut();
            let proto = match name {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                "icmp" => Protocol::Icmp,
                "any" => Protocol::Any,
                _ => {
                    let span = c.span(ctx.call_position());
                    let hint = match did_you_mean(name, ["tcp", "udp", "icmp", "any"]) {
                        Some(m) => format!("did you mean {m:?}?"),
                        None => "a protocol is \"tcp\", \"udp\", \"icmp\" or \"any\"".into(),
                    };
                    c.error(span, format!("unknown protocol {name:?}"), hint);
                    return n.clone();
                }
            };
            set_protocol(&mut c, ctx.call_position(), n, "protocol", proto);
            n.clone()
        },
    );
    let s = shared.clone();
    engine.register_fn(
        "ports",
        move |ctx: NativeCallContext, n: &mut NetworkHandle, ports: Dynamic| {
            let mut c = s.borrow_mut();
            let span = c.span(ctx.call_position());
            match &n.last {
                Last::Rules(idx) => {
                    if let Ok(p) = parse_ports(&mut c, &span, ports) {
                        for &i in idx {
                            c.net[i].ports = p.clone();
                            c.port_spans.insert(i, span.clone());
                        }
                    }
                }
                Last::Poisoned => {
                    // Still check them, so one run reports every mistake.
                    let _ = parse_ports(&mut c, &span, ports);
                }
                Last::None => c.no_rule(
                    span,
                    "ports",
                    "network().ingress().deny(\"any\").tcp().ports([22])",
                ),
            }
            n.clone()
        },
    );
    let s = shared.clone();
    engine.register_fn(
        "named",
        move |ctx: NativeCallContext, n: &mut NetworkHandle, name: &str| {
            let mut c = s.borrow_mut();
            let span = c.span(ctx.call_position());
            if let Some(i) = n.rate {
                let old = c.rate_limits[i].name.clone();
                if c.claim_name(name, &old, &span).is_ok() {
                    c.rate_limits[i].name = name.to_string();
                }
                return n.clone();
            }
            match &n.last {
                Last::Rules(idx) => {
                    let i = idx[0];
                    let old = c.net[i].name.clone();
                    if c.claim_name(name, &old, &span).is_ok() {
                        c.net[i].name = name.to_string();
                    }
                }
                Last::Poisoned => {}
                Last::None => c.no_rule(
                    span,
                    "named",
                    "network().ingress().deny([...]).named(\"x\")",
                ),
            }
            n.clone()
        },
    );
    let s = shared.clone();
    engine.register_fn(
        "default_action",
        move |ctx: NativeCallContext, n: &mut NetworkHandle, action: &str| {
            let mut c = s.borrow_mut();
            let parsed = match action {
                "allow" => Some(Action::Allow),
                "deny" => Some(Action::Deny),
                "audit" => Some(Action::Audit),
                _ => None,
            };
            match parsed {
                Some(a) => set_default(&mut c, ctx.call_position(), n, a),
                None => {
                    let span = c.span(ctx.call_position());
                    let hint = match did_you_mean(action, ["allow", "deny", "audit"]) {
                        Some(m) => format!("did you mean {m:?}?"),
                        None => "the default action is \"allow\", \"deny\" or \"audit\"".into(),
                    };
                    c.error(span, format!("unknown action {action:?}"), hint);
                }
            }
            n.with(Last::Poisoned, None)
        },
    );
    for (fname, action) in [
        ("default_deny", Action::Deny),
        ("default_allow", Action::Allow),
        ("default_audit", Action::Audit),
    ] {
        let s = shared.clone();
        engine.register_fn(
            fname,
            move |ctx: NativeCallContext, n: &mut NetworkHandle| {
                let mut c = s.borrow_mut();
                set_default(&mut c, ctx.call_position(), n, action);
                n.with(Last::Poisoned, None)
            },
        );
    }
    let s = shared.clone();
    engine.register_fn(
        "rate_limit",
        move |ctx: NativeCallContext, n: &mut NetworkHandle, cidrs: Dynamic, pps: Dynamic| {
            let mut c = s.borrow_mut();
            rate_limit(&mut c, ctx.call_position(), n, cidrs, pps)
        },
    );
}

fn direction_or_report(
    c: &mut Collector,
    span: &crate::Span,
    n: &NetworkHandle,
    fname: &str,
) -> Option<Direction> {
    if n.direction.is_none() {
        c.error(
            span.clone(),
            format!("{fname}(...) needs a direction"),
            format!("write network().ingress().{fname}(...) or network().egress().{fname}(...)"),
        );
    }
    n.direction
}

fn add_rule(
    c: &mut Collector,
    pos: Position,
    n: &NetworkHandle,
    fname: &str,
    action: Action,
    cidrs: Dynamic,
) -> NetworkHandle {
    let span = c.span(pos);
    let Some(direction) = direction_or_report(c, &span, n, fname) else {
        return n.with(Last::Poisoned, None);
    };
    let Ok(nets) = parse_cidrs(c, &span, cidrs) else {
        return n.with(Last::Poisoned, None);
    };
    let id = c.next_id();
    let name = c.auto_name(
        format!(
            "{}-{}-line{}",
            direction.as_str(),
            action.as_str(),
            span.line
        ),
        &span,
    );
    c.net.push(NetRule {
        id,
        name,
        direction,
        action,
        cidrs: nets,
        protocol: Protocol::Any,
        ports: Vec::new(),
        span,
    });
    n.with(Last::Rules(vec![c.net.len() - 1]), None)
}

fn set_protocol(c: &mut Collector, pos: Position, n: &NetworkHandle, fname: &str, proto: Protocol) {
    let span = c.span(pos);
    match &n.last {
        Last::Rules(idx) => {
            for &i in idx {
                c.net[i].protocol = proto;
            }
        }
        Last::Poisoned => {}
        Last::None if n.rate.is_some() => c.error(
            span,
            format!(".{fname}() does not apply to a rate limit"),
            "a rate limit counts every packet of a source address",
        ),
        Last::None => c.no_rule(
            span,
            fname,
            &format!("network().ingress().deny(\"any\").{fname}()"),
        ),
    }
}

fn set_default(c: &mut Collector, pos: Position, n: &NetworkHandle, action: Action) {
    let span = c.span(pos);
    let Some(direction) = direction_or_report(c, &span, n, "default_action") else {
        return;
    };
    if let Some((_, first)) = c.defaults.get(&direction) {
        let first = first.clone();
        c.error(
            span,
            format!("the default {} action is set twice", direction.as_str()),
            format!("it was already set at {first}"),
        );
        return;
    }
    c.defaults.insert(direction, (action, span));
}

fn rate_limit(
    c: &mut Collector,
    pos: Position,
    n: &NetworkHandle,
    cidrs: Dynamic,
    pps: Dynamic,
) -> NetworkHandle {
    let span = c.span(pos);
    let Some(direction) = direction_or_report(c, &span, n, "rate_limit") else {
        return n.with(Last::Poisoned, None);
    };
    if direction == Direction::Egress {
        c.error(
            span,
            "rate limits apply to ingress only",
            "a rate limit caps the packets each source address may send: write network().ingress().rate_limit(...)",
        );
        return n.with(Last::Poisoned, None);
    }
    let nets = parse_cidrs(c, &span, cidrs);
    let rate = ints(c, &span, pps, "packets per second", 1..=i64::from(u32::MAX));
    let (Ok(nets), Ok(rate)) = (nets, rate) else {
        return n.with(Last::Poisoned, None);
    };
    let Some(&pps) = rate.first().filter(|_| rate.len() == 1) else {
        c.error(
            span,
            "rate_limit takes one packets-per-second number",
            "write network().ingress().rate_limit(\"0.0.0.0/0\", 1000)",
        );
        return n.with(Last::Poisoned, None);
    };
    let id = c.next_id();
    let name = c.auto_name(format!("ingress-rate-line{}", span.line), &span);
    c.rate_limits.push(RateLimit {
        id,
        name,
        cidrs: nets,
        packets_per_sec: pps as u32,
        span,
    });
    n.with(Last::None, Some(c.rate_limits.len() - 1))
}

/// `"any"`, `[]`, a CIDR string or an array of them. `"any"` and `[]` give an empty list
/// (every address).
fn parse_cidrs(c: &mut Collector, span: &crate::Span, v: Dynamic) -> Result<Vec<IpNet>, ()> {
    let list = items(v);
    let mut nets = Vec::with_capacity(list.len());
    let mut any = false;
    let mut bad = false;
    for item in list {
        let text = match item.into_immutable_string() {
            Ok(t) => t,
            Err(ty) => {
                bad = true;
                c.error(
                    span.clone(),
                    format!("expected a CIDR string, found a {ty}"),
                    "write addresses as strings: \"192.0.2.0/24\"",
                );
                continue;
            }
        };
        if text.trim() == "any" {
            any = true;
            continue;
        }
        match parse_cidr(&text) {
            Ok(net) => nets.push(net),
            Err((message, hint)) => {
                bad = true;
                c.error(span.clone(), message, hint);
            }
        }
    }
    if bad {
        return Err(());
    }
    if any && !nets.is_empty() {
        c.error(
            span.clone(),
            "\"any\" is listed together with other addresses",
            "\"any\" already means every address: write it alone",
        );
        return Err(());
    }
    Ok(nets)
}

/// Parses `a.b.c.d/n`, `a:b::/n` or a bare address (a host: /32 or /128).
/// A prefix with host bits set is an error whose hint gives the network address.
pub(crate) fn parse_cidr(text: &str) -> Result<IpNet, (String, String)> {
    let text = text.trim();
    let net: IpNet = if text.contains('/') {
        text.parse().map_err(|_| {
            (
                format!("invalid CIDR {text:?}"),
                "write an address and a prefix length: \"192.0.2.0/24\" or \"2001:db8::/32\""
                    .to_string(),
            )
        })?
    } else {
        let addr: std::net::IpAddr = text.parse().map_err(|_| {
            (
                format!("invalid address {text:?}"),
                "write an IPv4 or IPv6 address, optionally with a prefix length (or \"any\")"
                    .to_string(),
            )
        })?;
        IpNet::from(addr)
    };
    if net.trunc() != net {
        return Err((
            format!("CIDR {text:?} has host bits set"),
            format!("did you mean \"{}\"?", net.trunc()),
        ));
    }
    Ok(net)
}

/// Ports: an integer, a `"first-last"` string, or an array of them. `[]` is every port.
fn parse_ports(c: &mut Collector, span: &crate::Span, v: Dynamic) -> Result<Vec<PortRange>, ()> {
    let mut out = Vec::new();
    let mut bad = false;
    let out_of_range = |c: &mut Collector, n: i64| {
        c.error(
            span.clone(),
            format!("port {n} is out of range"),
            "ports are 1..=65535",
        );
    };
    for item in items(v) {
        if let Ok(n) = item.as_int() {
            if !(1..=65535).contains(&n) {
                out_of_range(c, n);
                bad = true;
                continue;
            }
            out.push(PortRange {
                first: n as u16,
                last: n as u16,
            });
            continue;
        }
        let Ok(text) = item.clone().into_immutable_string() else {
            c.error(
                span.clone(),
                format!("expected a port, found a {}", item.type_name()),
                "write a port as a number (443) or a range as a string (\"8000-8100\")",
            );
            bad = true;
            continue;
        };
        let (a, b) = match text.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (text.trim(), text.trim()),
        };
        match (a.parse::<i64>(), b.parse::<i64>()) {
            (Ok(a), Ok(b)) => {
                if !(1..=65535).contains(&a) {
                    out_of_range(c, a);
                    bad = true;
                } else if !(1..=65535).contains(&b) {
                    out_of_range(c, b);
                    bad = true;
                } else if a > b {
                    c.error(
                        span.clone(),
                        format!("port range {text:?} is empty: {a} > {b}"),
                        format!("did you mean \"{b}-{a}\"?"),
                    );
                    bad = true;
                } else {
                    out.push(PortRange {
                        first: a as u16,
                        last: b as u16,
                    });
                }
            }
            _ => {
                c.error(
                    span.clone(),
                    format!("invalid port or port range {text:?}"),
                    "write a port as a number (443) or a range as \"first-last\" (\"8000-8100\")",
                );
                bad = true;
            }
        }
    }
    if bad { Err(()) } else { Ok(out) }
}
