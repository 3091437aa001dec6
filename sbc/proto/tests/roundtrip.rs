//! Property tests of the SIP parser and serializer (RFC 3261 §7, §20, §25):
//! - a generated valid message serializes and parses back to itself, as a datagram and through stream framing
//!   cut at arbitrary points, several messages and keep-alives in one stream;
//! - every typed accessor returns what was generated (branch, tags, CSeq, URIs, parameters, …);
//! - the equivalent wire forms RFC 3261 allows (compact names, any case, white space around the colon, folded
//!   lines, comma-joined lists, no Content-Length on a datagram) parse to the same message;
//! - nothing panics on arbitrary bytes or on mutations of a valid message, and whatever still parses round-trips.
//!
//! Messages are generated as specs (plain values) rendered to header values, so the accessors can be checked
//! against the spec rather than against the parser itself.

use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::Index;
use sbc_proto::msg::{
    frame, parse_datagram, parse_stream, Contacts, Framed, HeaderName, Headers, Message, Method, NameAddr, Request,
    Response, Scheme, Uri, Via,
};
use std::net::{Ipv4Addr, Ipv6Addr};

const TOKEN: &str = "[A-Za-z0-9.!%*_+`'~-]";
/// Separators with the optional white space RFC 3261 §25.1 allows around `;` and `=` in header parameters.
const SEMI: [&str; 4] = [";", " ;", "; ", " ;\t"];
const EQUAL: [&str; 3] = ["=", " = ", "=\t"];

fn token(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("{TOKEN}{{1,{max}}}")).expect("regex")
}

/// A random permutation of `v`, driven by generated indices.
fn shuffle<T>(v: &mut [T], seed: &[Index]) {
    if seed.is_empty() {
        return;
    }
    for i in (1..v.len()).rev() {
        let j = seed[i % seed.len()].index(i + 1);
        v.swap(i, j);
    }
}

#[derive(Debug, Clone)]
enum Host {
    Name(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl Host {
    fn render(&self) -> String {
        match self {
            Self::Name(n) => n.clone(),
            Self::V4(a) => a.to_string(),
            Self::V6(a) => format!("[{a}]"),
        }
    }
}

fn ipv6() -> impl Strategy<Value = Ipv6Addr> {
    // Zero runs are likely, so `::` compression and IPv4-mapped forms come up.
    prop::array::uniform8(prop_oneof![2 => Just(0u16), 1 => any::<u16>(), 1 => Just(0xffffu16)])
        .prop_map(Ipv6Addr::from)
}

fn host() -> BoxedStrategy<Host> {
    prop_oneof![
        3 => "([a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?\\.){0,3}[a-zA-Z]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?\\.?".prop_map(Host::Name),
        2 => any::<[u8; 4]>().prop_map(|o| Host::V4(Ipv4Addr::from(o))),
        1 => ipv6().prop_map(Host::V6),
    ]
    .boxed()
}

/// A parameter as generated: its value is exactly what the accessor must return.
#[derive(Debug, Clone)]
struct Param {
    name: String,
    value: Option<String>,
    /// Which white space variant to write around `;` and `=` (header parameters only).
    ws: usize,
}

fn render_header_params(out: &mut String, params: &[Param]) {
    for p in params {
        out.push_str(SEMI[p.ws % SEMI.len()]);
        out.push_str(&p.name);
        if let Some(v) = &p.value {
            out.push_str(EQUAL[p.ws / SEMI.len() % EQUAL.len()]);
            out.push_str(v);
        }
    }
}

fn render_uri_params(out: &mut String, params: &[Param]) {
    for p in params {
        out.push(';');
        out.push_str(&p.name);
        if let Some(v) = &p.value {
            out.push('=');
            out.push_str(v);
        }
    }
}

/// The value the first parameter called `name` (case-insensitive) has, as a lookup must find it.
fn first<'a>(params: &'a [Param], name: &str) -> Option<Option<&'a [u8]>> {
    params.iter().find(|p| p.name.eq_ignore_ascii_case(name)).map(|p| p.value.as_deref().map(str::as_bytes))
}

fn quoted_string() -> impl Strategy<Value = String> {
    // qdtext (with UTF-8) and quoted-pairs, including escaped quotes and backslashes.
    "\"([ !#-\\[\\]-~äöü€]|\\\\[ -~]){0,12}\""
}

/// `gen-value = token / host / quoted-string`.
fn gen_value() -> impl Strategy<Value = String> {
    prop_oneof![3 => token(10), 1 => quoted_string(), 1 => host().prop_map(|h| h.render())]
}

/// Extension parameters named `x…`, so they never shadow the ones the tests look up.
fn ext_params(max: usize) -> impl Strategy<Value = Vec<Param>> {
    prop::collection::vec(
        ("x[a-z0-9-]{0,6}", prop::option::of(gen_value()), 0usize..12).prop_map(|(name, value, ws)| Param {
            name,
            value,
            ws,
        }),
        0..=max,
    )
}

fn uri_params(max: usize) -> impl Strategy<Value = Vec<Param>> {
    let named = prop_oneof![
        Just(("transport".to_owned(), Some("tcp".to_owned()))),
        Just(("user".to_owned(), Some("phone".to_owned()))),
        Just(("lr".to_owned(), None)),
        ("[a-z][a-z0-9-]{0,8}", prop::option::of("([a-zA-Z0-9_.!~*'()\\[\\]/:&+$-]|%[0-9A-Fa-f]{2}){1,10}"),),
    ];
    prop::collection::vec(named.prop_map(|(name, value)| Param { name, value, ws: 0 }), 0..=max)
}

#[derive(Debug, Clone)]
struct SipUriSpec {
    secure: bool,
    user: Option<String>,
    password: Option<String>,
    host: Host,
    port: Option<u16>,
    params: Vec<Param>,
    headers: Option<String>,
}

#[derive(Debug, Clone)]
enum UriSpec {
    Sip(SipUriSpec),
    Tel { number: String, params: Vec<Param> },
}

impl UriSpec {
    fn render(&self) -> String {
        let mut s = String::new();
        match self {
            Self::Sip(u) => {
                s.push_str(if u.secure { "sips:" } else { "sip:" });
                if let Some(user) = &u.user {
                    s.push_str(user);
                    if let Some(pw) = &u.password {
                        s.push(':');
                        s.push_str(pw);
                    }
                    s.push('@');
                }
                s.push_str(&u.host.render());
                if let Some(p) = u.port {
                    s.push_str(&format!(":{p}"));
                }
                render_uri_params(&mut s, &u.params);
                if let Some(h) = &u.headers {
                    s.push('?');
                    s.push_str(h);
                }
            }
            Self::Tel { number, params } => {
                s.push_str("tel:");
                s.push_str(number);
                render_uri_params(&mut s, params);
            }
        }
        s
    }
}

fn sip_uri(with_headers: bool) -> BoxedStrategy<UriSpec> {
    let headers = if with_headers {
        prop::option::weighted(0.2, "[a-zA-Z][a-zA-Z0-9-]{0,8}=([a-zA-Z0-9_.!~*'()/:+$-]|%[0-9A-Fa-f]{2}){1,10}")
            .boxed()
    } else {
        Just(None).boxed()
    };
    (
        any::<bool>(),
        prop::option::weighted(0.8, "([a-zA-Z0-9_.!~*'()&=+$,;?/-]|%[0-9A-Fa-f]{2}){1,12}"),
        prop::option::weighted(0.1, "([a-zA-Z0-9_.!~*'()&=+$,-]|%[0-9A-Fa-f]{2}){0,8}"),
        host(),
        prop::option::of(any::<u16>()),
        uri_params(3),
        headers,
    )
        .prop_map(|(secure, user, password, host, port, params, headers)| {
            let password = user.as_ref().and(password);
            UriSpec::Sip(SipUriSpec { secure, user, password, host, port, params, headers })
        })
        .boxed()
}

fn tel_uri() -> impl Strategy<Value = UriSpec> {
    let global = ("\\+[0-9]{1,3}([-.]?[0-9]{1,4}){1,4}", uri_params(1));
    let local = ("[0-9*#]{1,8}", "(\\+[0-9]{1,4}|[a-z]{1,8}\\.[a-z]{2,3})", uri_params(1)).prop_map(
        |(number, ctx, mut params)| {
            params.insert(0, Param { name: "phone-context".into(), value: Some(ctx), ws: 0 });
            (number, params)
        },
    );
    prop_oneof![global, local].prop_map(|(number, params)| UriSpec::Tel { number, params })
}

fn any_uri(with_headers: bool) -> BoxedStrategy<UriSpec> {
    prop_oneof![4 => sip_uri(with_headers), 1 => tel_uri()].boxed()
}

fn check_uri(got: &Uri, want: &UriSpec) -> Result<(), TestCaseError> {
    prop_assert_eq!(&got.as_bytes()[..], &want.render().into_bytes()[..]);
    match want {
        UriSpec::Sip(w) => {
            prop_assert_eq!(got.scheme(), if w.secure { Scheme::Sips } else { Scheme::Sip });
            let u = got.sip().expect("a sip URI");
            prop_assert_eq!(u.secure, w.secure);
            prop_assert_eq!(u.user, w.user.as_deref().map(str::as_bytes));
            prop_assert_eq!(u.password, w.password.as_deref().map(str::as_bytes));
            prop_assert_eq!(u.host, &w.host.render().into_bytes()[..]);
            prop_assert_eq!(u.port, w.port);
            prop_assert_eq!(u.headers, w.headers.as_deref().map(str::as_bytes));
            for p in &w.params {
                prop_assert_eq!(u.params.get(&p.name), first(&w.params, &p.name), "URI parameter {}", p.name);
            }
            prop_assert_eq!(got.user(), w.user.as_deref().map(str::as_bytes));
        }
        UriSpec::Tel { number, params } => {
            prop_assert_eq!(got.scheme(), Scheme::Tel);
            let t = got.tel().expect("a tel URI");
            prop_assert_eq!(t.number, number.as_bytes());
            for p in params {
                prop_assert_eq!(t.params.get(&p.name), first(params, &p.name), "tel parameter {}", p.name);
            }
            prop_assert_eq!(got.user(), Some(number.as_bytes()));
        }
    }
    Ok(())
}

/// A name-addr or addr-spec (From, To, Contact, Route, Record-Route, P-Asserted-Identity).
#[derive(Debug, Clone)]
struct AddrSpec {
    /// Token words or a quoted string with its quotes: what `display()` returns.
    display: Option<String>,
    space_before_angle: bool,
    /// `<uri>` rather than a bare addr-spec (which RFC 3261 §20.10 allows only without `;`, `?` or `,`).
    angle: bool,
    uri: UriSpec,
    params: Vec<Param>,
}

impl AddrSpec {
    fn render(&self) -> String {
        let mut s = String::new();
        if self.angle {
            if let Some(d) = &self.display {
                s.push_str(d);
                if self.space_before_angle {
                    s.push(' ');
                }
            }
            s.push('<');
            s.push_str(&self.uri.render());
            s.push('>');
        } else {
            s.push_str(&self.uri.render());
        }
        render_header_params(&mut s, &self.params);
        s
    }
}

fn display() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        quoted_string(),
        proptest::string::string_regex(&format!("{TOKEN}{{1,8}}( {TOKEN}{{1,8}}){{0,2}}")).expect("regex"),
    ])
}

/// An address whose parameters are `fixed` (e.g. a tag) and some extension parameters, in random order.
fn addr(with_uri_headers: bool, fixed: Vec<Param>) -> BoxedStrategy<AddrSpec> {
    (
        display(),
        any::<bool>(),
        any::<bool>(),
        any_uri(with_uri_headers),
        ext_params(2),
        prop::collection::vec(any::<Index>(), 4),
    )
        .prop_map(move |(display, space_before_angle, bare, uri, ext, seed)| {
            let mut params = fixed.clone();
            params.extend(ext);
            shuffle(&mut params, &seed);
            let rendered = uri.render();
            let bare_ok = display.is_none() && !rendered.contains([';', '?', ',']);
            AddrSpec { display, space_before_angle, angle: !(bare && bare_ok), uri, params }
        })
        .boxed()
}

fn check_addr(got: &NameAddr, want: &AddrSpec) -> Result<(), TestCaseError> {
    check_addr_parts(got, want)?;
    // What `to_bytes` writes (white space normalised) must parse back to the same parts.
    check_addr_parts(&NameAddr::parse(&got.to_bytes()).expect("re-parse"), want)
}

fn check_addr_parts(got: &NameAddr, want: &AddrSpec) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.display(), want.display.as_deref().map(str::as_bytes));
    prop_assert_eq!(got.uri_bytes(), &want.uri.render().into_bytes()[..]);
    check_uri(&got.uri(), &want.uri)?;
    for p in &want.params {
        prop_assert_eq!(got.param(&p.name), first(&want.params, &p.name), "parameter {}", p.name);
    }
    prop_assert_eq!(got.tag(), first(&want.params, "tag").flatten());
    Ok(())
}

#[derive(Debug, Clone)]
struct ViaSpec {
    spaced: bool,
    transport: String,
    host: Host,
    port: Option<u16>,
    spaced_port: bool,
    params: Vec<Param>,
}

impl ViaSpec {
    fn render(&self) -> String {
        let sep = if self.spaced { " / " } else { "/" };
        let mut s = format!("SIP{sep}2.0{sep}{} {}", self.transport, self.host.render());
        if let Some(p) = self.port {
            s.push_str(if self.spaced_port { " : " } else { ":" });
            s.push_str(&p.to_string());
        }
        render_header_params(&mut s, &self.params);
        s
    }
}

fn via() -> BoxedStrategy<ViaSpec> {
    let transport = prop_oneof![
        Just("UDP".to_owned()),
        Just("TCP".to_owned()),
        Just("TLS".to_owned()),
        Just("WSS".to_owned()),
        token(6)
    ];
    let received =
        prop_oneof![any::<[u8; 4]>().prop_map(|o| Ipv4Addr::from(o).to_string()), ipv6().prop_map(|a| a.to_string())];
    (
        (any::<bool>(), transport, host(), prop::option::of(any::<u16>()), any::<bool>()),
        (token(16), prop::option::of(received), prop::option::of(prop::option::of(any::<u16>()))),
        (ext_params(2), prop::collection::vec(0usize..12, 3), prop::collection::vec(any::<Index>(), 4)),
    )
        .prop_map(|((spaced, transport, host, port, spaced_port), (branch, received, rport), (ext, ws, seed))| {
            let mut params = vec![Param { name: "branch".into(), value: Some(format!("z9hG4bK{branch}")), ws: ws[0] }];
            if let Some(r) = received {
                params.push(Param { name: "received".into(), value: Some(r), ws: ws[1] });
            }
            if let Some(r) = rport {
                params.push(Param { name: "rport".into(), value: r.map(|p| p.to_string()), ws: ws[2] });
            }
            params.extend(ext);
            shuffle(&mut params, &seed);
            ViaSpec { spaced, transport, host, port, spaced_port, params }
        })
        .boxed()
}

fn check_via(got: &Via, want: &ViaSpec) -> Result<(), TestCaseError> {
    check_via_parts(got, want)?;
    check_via_parts(&Via::parse(&got.to_bytes()).expect("re-parse"), want)
}

fn check_via_parts(got: &Via, want: &ViaSpec) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.protocol(), b"SIP");
    prop_assert_eq!(got.version(), b"2.0");
    prop_assert_eq!(got.transport(), want.transport.as_bytes());
    prop_assert_eq!(got.host(), &want.host.render().into_bytes()[..]);
    prop_assert_eq!(got.port, want.port);
    prop_assert_eq!(got.branch(), first(&want.params, "branch").flatten());
    prop_assert!(got.has_rfc3261_branch());
    prop_assert_eq!(got.received(), first(&want.params, "received").flatten());
    let rport =
        first(&want.params, "rport").map(|v| v.map(|p| std::str::from_utf8(p).unwrap().parse::<u16>().unwrap()));
    prop_assert_eq!(got.rport(), rport);
    for p in &want.params {
        prop_assert_eq!(got.param(&p.name), first(&want.params, &p.name), "parameter {}", p.name);
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum ContactSpec {
    None,
    Star,
    Addrs(Vec<AddrSpec>),
}

#[derive(Debug, Clone)]
struct ContentTypeSpec {
    kind: String,
    subtype: String,
    params: Vec<Param>,
}

fn content_type() -> impl Strategy<Value = ContentTypeSpec> {
    let kind = prop_oneof![
        Just(("application".to_owned(), "sdp".to_owned())),
        Just(("multipart".to_owned(), "mixed".to_owned())),
        (token(10), token(10)),
    ];
    let param =
        (prop_oneof![Just("charset".to_owned()), Just("boundary".to_owned()), "x[a-z]{0,5}"], token(12), 0usize..12)
            .prop_map(|(name, v, ws)| Param { name, value: Some(v), ws });
    (kind, prop::collection::vec(param, 0..3)).prop_map(|((kind, subtype), params)| ContentTypeSpec {
        kind,
        subtype,
        params,
    })
}

#[derive(Debug, Clone)]
enum StartSpec {
    Request { method: String, uri: UriSpec },
    Response { status: u16, reason: String, cseq_method: String },
}

/// A whole message as generated.
#[derive(Debug, Clone)]
struct Spec {
    start: StartSpec,
    vias: Vec<ViaSpec>,
    from: AddrSpec,
    to: AddrSpec,
    call_id: String,
    cseq: u32,
    max_forwards: Option<u32>,
    contacts: ContactSpec,
    routes: Vec<AddrSpec>,
    record_routes: Vec<AddrSpec>,
    content_type: Option<ContentTypeSpec>,
    /// Headers the parser keeps opaque (extension and known ones), each as one entry.
    opaque: Vec<(HeaderName, String)>,
    /// Shuffles the order of the header blocks (same-named headers keep their relative order).
    order: Vec<Index>,
    body: Vec<u8>,
}

impl Spec {
    fn method(&self) -> &str {
        match &self.start {
            StartSpec::Request { method, .. } => method,
            StartSpec::Response { cseq_method, .. } => cseq_method,
        }
    }

    fn message(&self) -> Message {
        let mut blocks: Vec<Vec<(HeaderName, String)>> = vec![
            self.vias.iter().map(|v| (HeaderName::Via, v.render())).collect(),
            vec![(HeaderName::From, self.from.render())],
            vec![(HeaderName::To, self.to.render())],
            vec![(HeaderName::CallId, self.call_id.clone())],
            vec![(HeaderName::CSeq, format!("{} {}", self.cseq, self.method()))],
            self.routes.iter().map(|r| (HeaderName::Route, r.render())).collect(),
            self.record_routes.iter().map(|r| (HeaderName::RecordRoute, r.render())).collect(),
        ];
        if let Some(mf) = self.max_forwards {
            blocks.push(vec![(HeaderName::MaxForwards, mf.to_string())]);
        }
        match &self.contacts {
            ContactSpec::None => {}
            ContactSpec::Star => blocks.push(vec![(HeaderName::Contact, "*".into())]),
            ContactSpec::Addrs(a) => blocks.push(a.iter().map(|c| (HeaderName::Contact, c.render())).collect()),
        }
        if let Some(ct) = &self.content_type {
            let mut v = format!("{}/{}", ct.kind, ct.subtype);
            render_header_params(&mut v, &ct.params);
            blocks.push(vec![(HeaderName::ContentType, v)]);
        }
        blocks.extend(self.opaque.iter().map(|h| vec![h.clone()]));
        shuffle(&mut blocks, &self.order);
        let mut headers = Headers::new();
        for (name, value) in blocks.into_iter().flatten() {
            headers.push(name, value);
        }
        let body = Bytes::from(self.body.clone());
        match &self.start {
            StartSpec::Request { method, uri } => Message::Request(Request {
                method: Method::from_token(Bytes::from(method.clone())),
                uri: Uri::parse(Bytes::from(uri.render())).expect("generated URIs are valid"),
                headers,
                body,
            }),
            StartSpec::Response { status, reason, .. } => {
                Message::Response(Response { status: *status, reason: Bytes::from(reason.clone()), headers, body })
            }
        }
    }
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "UPDATE", "INFO", "SUBSCRIBE", "NOTIFY",
            "REFER", "MESSAGE", "PUBLISH",
        ])
        .prop_map(str::to_owned),
        1 => token(12),
    ]
}

fn start() -> BoxedStrategy<StartSpec> {
    prop_oneof![
        (method(), any_uri(false)).prop_map(|(method, uri)| StartSpec::Request { method, uri }),
        // Reason-Phrase: any text but CR and LF, UTF-8 included (RFC 3261 §25.1).
        (100u16..=699, "[ -~äöü€\t]{0,24}", method()).prop_map(|(status, reason, cseq_method)| StartSpec::Response {
            status,
            reason,
            cseq_method
        }),
    ]
    .boxed()
}

/// Headers the parser keeps as received.
fn opaque_header() -> BoxedStrategy<(HeaderName, String)> {
    prop_oneof![
        4 => ("X-[A-Za-z0-9-]{1,12}", "([!-~]([ -~]{0,40}[!-~])?)?")
            .prop_map(|(n, v)| (HeaderName::from_bytes(Bytes::from(n)), v)),
        1 => "(INVITE|ACK|BYE|CANCEL|OPTIONS)( ?, ?(INVITE|ACK|BYE|PRACK|UPDATE)){0,5}".prop_map(|v| (HeaderName::Allow, v)),
        1 => "(100rel|timer|replaces)(, (100rel|timer|path)){0,2}".prop_map(|v| (HeaderName::Supported, v)),
        1 => "[A-Za-z]{1,8}/[0-9.]{1,6}( \\([ -'*-~]{0,12}\\))?".prop_map(|v| (HeaderName::UserAgent, v)),
        1 => "[ -~äöü€]{0,30}".prop_map(|v| (HeaderName::Subject, v.trim_matches(' ').to_owned())),
        1 => Just((HeaderName::Date, "Sat, 13 Nov 2010 23:29:00 GMT".to_owned())),
        1 => addr(false, vec![]).prop_map(|a| (HeaderName::PAssertedIdentity, a.render())),
    ]
    .boxed()
}

/// A loose router (RFC 3261 §16.12): <sip:host;lr>.
fn route() -> BoxedStrategy<AddrSpec> {
    (display(), any::<bool>(), sip_uri(false), ext_params(1))
        .prop_map(|(display, space_before_angle, mut uri, params)| {
            if let UriSpec::Sip(u) = &mut uri {
                u.params.push(Param { name: "lr".into(), value: None, ws: 0 });
            }
            AddrSpec { display, space_before_angle, angle: true, uri, params }
        })
        .boxed()
}

fn spec() -> BoxedStrategy<Spec> {
    let from_tag = token(16).prop_map(|t| vec![Param { name: "tag".into(), value: Some(t), ws: 0 }]);
    let to_tag = prop::option::of(token(16))
        .prop_map(|t| t.map(|t| Param { name: "tag".into(), value: Some(t), ws: 2 }).into_iter().collect::<Vec<_>>());
    let contact_param = prop_oneof![
        (0u32..100_000).prop_map(|e| Param { name: "expires".into(), value: Some(e.to_string()), ws: 1 }),
        Just(Param { name: "q".into(), value: Some("0.5".into()), ws: 0 }),
        Just(Param {
            name: "+sip.instance".into(),
            value: Some("\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\"".into()),
            ws: 0
        }),
    ];
    let contacts = prop_oneof![
        1 => Just(ContactSpec::None),
        1 => Just(ContactSpec::Star),
        4 => prop::collection::vec(prop::collection::vec(contact_param, 0..3).prop_flat_map(|p| addr(true, p)), 1..4)
            .prop_map(ContactSpec::Addrs),
    ];
    (
        (
            start(),
            prop::collection::vec(via(), 1..4),
            from_tag.prop_flat_map(|t| addr(false, t)),
            to_tag.prop_flat_map(|t| addr(false, t)),
        ),
        (
            proptest::string::string_regex(
                "[A-Za-z0-9.!%*_+`'~()<>:\\\\\"/\\[\\]?{}-]{1,24}(@[A-Za-z0-9.!%*_+`'~()<>:/\\[\\]?{}-]{1,16})?",
            )
            .expect("regex"),
            any::<u32>(),
            prop::option::of(0u32..=255),
            contacts,
        ),
        (prop::collection::vec(route(), 0..3), prop::collection::vec(route(), 0..3), prop::option::of(content_type())),
        (prop::collection::vec(opaque_header(), 0..5), prop::collection::vec(any::<Index>(), 8), body()),
    )
        .prop_map(
            |(
                (start, vias, from, to),
                (call_id, cseq, max_forwards, contacts),
                (routes, record_routes, content_type),
                (opaque, order, body),
            )| {
                // RFC 3261 §20.15: a body needs its Content-Type (the parser refuses one without).
                let content_type = match content_type {
                    None if !body.is_empty() => Some(ContentTypeSpec {
                        kind: "application".into(),
                        subtype: "octet-stream".into(),
                        params: Vec::new(),
                    }),
                    ct => ct,
                };
                Spec {
                    start,
                    vias,
                    from,
                    to,
                    call_id,
                    cseq,
                    max_forwards,
                    contacts,
                    routes,
                    record_routes,
                    content_type,
                    opaque,
                    order,
                    body,
                }
            },
        )
        .boxed()
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => Just(Vec::new()),
        // Arbitrary octets: NUL, CR, LF, and CRLFCRLF inside a body must not confuse the framing.
        3 => prop::collection::vec(prop_oneof![any::<u8>(), Just(b'\r'), Just(b'\n'), Just(0u8)], 1..300),
        1 => Just(b"v=0\r\no=- 1 1 IN IP4 198.18.1.10\r\ns=-\r\nc=IN IP4 198.18.1.10\r\nt=0 0\r\nm=audio 30000 RTP/AVP 8\r\n\r\n".to_vec()),
    ]
}

fn check_accessors(m: &Message, s: &Spec) -> Result<(), TestCaseError> {
    let h = m.headers();
    match (m, &s.start) {
        (Message::Request(r), StartSpec::Request { method, uri }) => {
            prop_assert_eq!(r.method.as_bytes(), method.as_bytes());
            check_uri(&r.uri, uri)?;
        }
        (Message::Response(r), StartSpec::Response { status, reason, .. }) => {
            prop_assert_eq!(r.status, *status);
            prop_assert_eq!(&r.reason[..], reason.as_bytes());
        }
        _ => return Err(TestCaseError::fail("request/response kind changed")),
    }
    let vias = h.vias().expect("vias");
    prop_assert_eq!(vias.len(), s.vias.len());
    for (got, want) in vias.iter().zip(&s.vias) {
        check_via(got, want)?;
    }
    check_via(&h.top_via().expect("top via"), &s.vias[0])?;
    check_addr(&h.from().expect("from"), &s.from)?;
    check_addr(&h.to().expect("to"), &s.to)?;
    prop_assert_eq!(h.call_id().expect("call-id"), s.call_id.as_bytes());
    let cseq = h.cseq().expect("cseq");
    prop_assert_eq!(cseq.seq, s.cseq);
    prop_assert_eq!(cseq.method.as_bytes(), s.method().as_bytes());
    prop_assert_eq!(h.max_forwards().expect("max-forwards"), s.max_forwards);
    match (h.contacts().expect("contacts"), &s.contacts) {
        (Contacts::Addrs(a), ContactSpec::None) => prop_assert!(a.is_empty()),
        (Contacts::Star, ContactSpec::Star) => {}
        (Contacts::Addrs(got), ContactSpec::Addrs(want)) => {
            prop_assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(want) {
                check_addr(g, w)?;
            }
        }
        (got, want) => return Err(TestCaseError::fail(format!("contacts {got:?}, generated {want:?}"))),
    }
    for (got, want) in
        [(h.routes().expect("routes"), &s.routes), (h.record_routes().expect("record-routes"), &s.record_routes)]
    {
        prop_assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            check_addr(g, w)?;
            prop_assert_eq!(g.uri().sip().map(|u| u.params.has("lr")), Some(true));
        }
    }
    match (h.content_type().expect("content-type"), &s.content_type) {
        (None, None) => {}
        (Some(got), Some(want)) => {
            prop_assert_eq!(&got.kind[..], want.kind.as_bytes());
            prop_assert_eq!(&got.subtype[..], want.subtype.as_bytes());
            prop_assert!(got.is(&want.kind.to_ascii_uppercase(), &want.subtype));
            for p in &want.params {
                prop_assert_eq!(got.params.get(&p.name), first(&want.params, &p.name));
            }
        }
        (got, want) => return Err(TestCaseError::fail(format!("content-type {got:?}, generated {want:?}"))),
    }
    for (name, value) in &s.opaque {
        prop_assert!(h.get_all(name).any(|v| v == value.as_bytes()), "{} {:?} missing", name, value);
    }
    prop_assert!(h.get(&HeaderName::ContentLength).is_none(), "Content-Length is framing, not a header");
    prop_assert_eq!(&m.body()[..], &s.body[..]);
    Ok(())
}

/// Compact forms (RFC 3261 §7.3.3) of the headers generated here.
fn compact(name: &HeaderName) -> Option<&'static str> {
    Some(match name {
        HeaderName::Via => "v",
        HeaderName::From => "f",
        HeaderName::To => "t",
        HeaderName::CallId => "i",
        HeaderName::Contact => "m",
        HeaderName::ContentType => "c",
        HeaderName::Supported => "k",
        HeaderName::Subject => "s",
        _ => return None,
    })
}

/// How to write one message in a form RFC 3261 says is equivalent to its canonical serialization.
#[derive(Debug, Clone)]
struct WireForm {
    leading_crlfs: usize,
    /// Per header line: name style, white space before/after the colon, trailing white space, where to fold,
    /// whether to join this element onto the previous line of the same list header.
    lines: Vec<(u8, u8, u8, bool, Option<Index>, bool)>,
    /// 0: none (datagram only), 1: compact, 2: odd case and padding, 3: folded, 4: canonical.
    content_length: u8,
}

fn wire_form() -> impl Strategy<Value = WireForm> {
    (
        0usize..3,
        prop::collection::vec(
            (0u8..4, 0u8..3, 0u8..4, any::<bool>(), prop::option::weighted(0.3, any::<Index>()), any::<bool>()),
            40,
        ),
        0u8..5,
    )
        .prop_map(|(leading_crlfs, lines, content_length)| WireForm { leading_crlfs, lines, content_length })
}

fn render_wire_form(m: &Message, f: &WireForm) -> Vec<u8> {
    let mut out: Vec<u8> = b"\r\n".repeat(f.leading_crlfs);
    let canonical = m.to_bytes();
    let first_line = canonical.split(|&b| b == b'\n').next().expect("start line");
    out.extend_from_slice(first_line);
    out.push(b'\n');
    let mut prev: Option<&HeaderName> = None;
    for (i, (name, value)) in m.headers().iter().enumerate() {
        let (style, before, after, trailing, fold, join) = f.lines[i % f.lines.len()];
        let joinable = name.split_on_parse() && value != b"*" && !value.is_empty();
        if join && joinable && prev == Some(name) {
            // Comma-joined list element (RFC 3261 §7.3.1): out ends with the previous value's CRLF.
            out.truncate(out.len() - 2);
            out.extend_from_slice([&b","[..], b" ,", b", ", b" ,\t"][usize::from(after)]);
        } else {
            let n = name.as_bytes();
            match (style, compact(name)) {
                (0, Some(c)) => out.extend_from_slice(c.as_bytes()),
                (1, _) => out.extend_from_slice(&n.to_ascii_lowercase()),
                (2, _) => out.extend_from_slice(&n.to_ascii_uppercase()),
                _ => out.extend_from_slice(n),
            }
            out.extend_from_slice([&b""[..], b" ", b"\t "][usize::from(before)]);
            out.push(b':');
            out.extend_from_slice([&b""[..], b" ", b"  ", b"\t"][usize::from(after)]);
        }
        // Fold at a single space (one with non-white neighbours): unfolding gives back exactly one SP.
        let spaces: Vec<usize> = (1..value.len().saturating_sub(1))
            .filter(|&j| value[j] == b' ' && value[j - 1] != b' ' && value[j - 1] != b'\t')
            .filter(|&j| value[j + 1] != b' ' && value[j + 1] != b'\t')
            .collect();
        match fold.filter(|_| !spaces.is_empty()) {
            Some(ix) => {
                let j = spaces[ix.index(spaces.len())];
                out.extend_from_slice(&value[..j]);
                out.extend_from_slice(b"\r\n\t ");
                out.extend_from_slice(&value[j + 1..]);
            }
            None => out.extend_from_slice(value),
        }
        if trailing {
            out.extend_from_slice(b" \t");
        }
        out.extend_from_slice(b"\r\n");
        prev = Some(name);
    }
    let len = m.body().len();
    match f.content_length {
        0 => {}
        1 => out.extend_from_slice(format!("l:{len}\r\n").as_bytes()),
        2 => out.extend_from_slice(format!("content-length :  00{len} \r\n").as_bytes()),
        3 => out.extend_from_slice(format!("Content-Length:\r\n {len}\r\n").as_bytes()),
        _ => out.extend_from_slice(format!("Content-Length: {len}\r\n").as_bytes()),
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(m.body());
    out
}

/// 256 cases per property (proptest's default; `PROPTEST_CASES` overrides it for longer runs). Failures print
/// the shrunk input; nothing is persisted, as integration tests have no source-relative regressions file.
fn config() -> ProptestConfig {
    ProptestConfig { failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn serialized_messages_parse_back_to_themselves(s in spec()) {
        let m = s.message();
        let bytes = m.to_bytes();
        let parsed = parse_datagram(bytes.clone());
        prop_assert_eq!(parsed.as_ref(), Ok(&m), "{}", String::from_utf8_lossy(&bytes));
        prop_assert_eq!(parsed.expect("parsed").to_bytes(), bytes, "serialization is a fixed point");
    }

    #[test]
    fn typed_accessors_return_what_was_generated(s in spec()) {
        let bytes = s.message().to_bytes();
        let m = parse_datagram(bytes.clone()).map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&bytes))))?;
        check_accessors(&m, &s)?;
    }

    #[test]
    fn equivalent_wire_forms_parse_to_the_same_message(s in spec(), form in wire_form()) {
        let m = s.message();
        let wire = render_wire_form(&m, &form);
        let parsed = parse_datagram(Bytes::from(wire.clone()));
        prop_assert_eq!(parsed.as_ref(), Ok(&m), "{}", String::from_utf8_lossy(&wire));
        if form.content_length != 0 {
            // With a Content-Length, the same bytes frame and parse on a stream too (after the leading CRLFs).
            let wire = &wire[2 * form.leading_crlfs..];
            prop_assert_eq!(frame(wire, 65535), Ok(Framed::Message(wire.len())), "{}", String::from_utf8_lossy(wire));
            let parsed = parse_stream(Bytes::copy_from_slice(wire));
            prop_assert_eq!(parsed.as_ref(), Ok(&m));
        }
    }

    #[test]
    fn stream_framing_finds_every_message_wherever_the_bytes_are_cut(
        msgs in prop::collection::vec((spec(), 0usize..3), 1..4),
        cuts in prop::collection::vec(any::<Index>(), 0..24),
    ) {
        // Keep-alive CRLFs (RFC 5626 §3.5.1) before each message, then the message.
        let mut wire = Vec::new();
        let mut spans = Vec::new();
        let mut want = Vec::new();
        for (s, keepalive) in &msgs {
            wire.extend_from_slice(&b"\r\n".repeat(*keepalive));
            let m = s.message();
            let start = wire.len();
            wire.extend_from_slice(&m.to_bytes());
            spans.push(start..wire.len());
            want.push(m);
        }
        // Arbitrary cut points, plus one byte short of each message's end and the end itself.
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        points.extend(spans.iter().flat_map(|r| [r.end - 1, r.end]));
        points.sort_unstable();
        points.dedup();

        let (mut buf, mut fed, mut consumed, mut next) = (Vec::new(), 0, 0, 0);
        for p in points {
            buf.extend_from_slice(&wire[fed..p]);
            fed = p;
            loop {
                match frame(&buf, 65535) {
                    Ok(Framed::KeepAlive(n)) => {
                        prop_assert!(n > 0 && buf[..n].iter().all(|b| matches!(b, b'\r' | b'\n')));
                        prop_assert!(consumed + n <= spans[next].start, "keep-alive ate message bytes");
                        buf.drain(..n);
                        consumed += n;
                    }
                    Ok(Framed::Message(n)) => {
                        prop_assert_eq!(consumed..consumed + n, spans[next].clone(), "message {} misframed", next);
                        let one = Bytes::from(buf.drain(..n).collect::<Vec<u8>>());
                        let parsed = parse_stream(one);
                        prop_assert_eq!(parsed.as_ref(), Ok(&want[next]));
                        consumed += n;
                        next += 1;
                    }
                    Ok(Framed::Incomplete) => {
                        prop_assert!(next < spans.len() && fed < spans[next].end, "a whole message was buffered at {}", fed);
                        break;
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("framing error at {fed}: {e}"))),
                }
                if next == spans.len() {
                    break;
                }
            }
        }
        prop_assert_eq!(next, want.len());
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        check_no_panic(&data)?;
    }

    #[test]
    fn sip_like_junk_never_panics(parts in prop::collection::vec(prop::sample::select(vec![
        "INVITE ", "SIP/2.0", "SIP/2.0 ", "200 ", " ", "\t", "\r\n", "\n", "\r", ":", ";", ",", "<", ">", "\"", "\\", "@",
        "=", "/", "[", "]", "%", "sip:", "tel:", "Via", "v", "From", "To", "Call-ID", "CSeq", "Contact", "m", "Route",
        "Content-Length", "l", "Content-Type", "branch", "tag", "rport", "received", "1", "65536", "4294967296", "::",
        "a", "b.c", "\u{0}", "ä", "*",
    ]), 0..120)) {
        check_no_panic(parts.concat().as_bytes())?;
    }

    #[test]
    fn mutated_messages_never_panic_and_still_round_trip_if_they_parse(
        s in spec(),
        edits in prop::collection::vec((any::<Index>(), any::<Index>(), any::<u8>(), 0u8..6), 1..8),
    ) {
        let mut bytes = s.message().to_bytes().to_vec();
        for (at, len, byte, op) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => bytes[i] ^= 1 << (byte % 8),
                2 => bytes.insert(i, byte),
                3 => bytes.truncate(i),
                4 => drop(bytes.drain(i..i + len.index(bytes.len() - i + 1))),
                _ => {
                    let chunk = bytes[i..i + len.index((bytes.len() - i).min(64) + 1)].to_vec();
                    bytes.splice(i..i, chunk);
                }
            }
        }
        check_no_panic(&bytes)?;
    }
}

/// Every entry point on `data`; whatever parses must round-trip, frame as itself once serialized, and answer the
/// accessors of the headers the parser validates.
fn check_no_panic(data: &[u8]) -> Result<(), TestCaseError> {
    let input = Bytes::copy_from_slice(data);
    match parse_datagram(input.clone()) {
        Ok(m) => {
            let again = parse_datagram(m.to_bytes());
            prop_assert_eq!(again.as_ref(), Ok(&m), "{:?}", input);
            prop_assert_eq!(frame(&m.to_bytes(), usize::MAX), Ok(Framed::Message(m.to_bytes().len())));
            // The headers the parser validates answer their accessors without error.
            let h = m.headers();
            prop_assert!(h.call_id().is_ok() && h.cseq().is_ok() && h.from().is_ok() && h.to().is_ok());
            prop_assert!(h.top_via().is_ok() && h.vias().is_ok_and(|v| !v.is_empty()) && h.max_forwards().is_ok());
            prop_assert!(h.contacts().is_ok() && h.routes().is_ok() && h.record_routes().is_ok());
            prop_assert!(h.content_type().is_ok());
        }
        Err(e) => {
            prop_assert!(e.offset <= data.len() && e.line >= 1, "{:?}", e);
            let _ = (e.to_string(), e.status(), e.reason());
        }
    }
    if let Ok(Framed::Message(n) | Framed::KeepAlive(n)) = frame(data, 65535) {
        prop_assert!(n > 0 && n <= data.len());
        let _ = parse_stream(input.slice(..n));
    }
    let _ = parse_stream(input);
    Ok(())
}
