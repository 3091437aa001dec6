//! The names a peer's certificate vouches for (subject CN and DNS subjectAltNames), read with `x509-parser`.
//! Only called on certificates rustls has verified against the configured CA.

use sbc_proto::transport::TlsIdentity;
use x509_parser::extensions::GeneralName;

/// The identity of the end-entity certificate `der`; `None` when it does not parse (rustls parsed it already, so
/// that would be a certificate webpki accepts and x509-parser does not) or names nothing.
pub fn of_certificate(der: &[u8]) -> Option<TlsIdentity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let mut names: Vec<String> =
        cert.subject().iter_common_name().filter_map(|cn| cn.as_str().ok().map(str::to_owned)).collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push((*d).to_owned());
            }
        }
    }
    let id = TlsIdentity::new(names);
    (!id.names().is_empty()).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_cn_and_dns_sans_are_the_identity() {
        let mut params =
            rcgen::CertificateParams::new(vec!["pbx.customer.example.net".into(), "Alt.Example.net".into()])
                .expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, "PBX-1.customer.example.net");
        params.subject_alt_names.push(rcgen::SanType::IpAddress("198.18.1.10".parse().expect("ip")));
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let id = of_certificate(cert.der()).expect("names");
        assert_eq!(id.names(), ["pbx-1.customer.example.net", "pbx.customer.example.net", "alt.example.net"]);
        assert!(of_certificate(b"not a certificate").is_none());
    }
}
