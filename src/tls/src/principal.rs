//! Kafka's SSL principal: a client certificate's subject, as Java prints it, rewritten by
//! `ssl.principal.mapping.rules`.
//!
//! ACLs name principals as strings (`User:CN=alice,OU=eng,O=Acme,C=US`), written by operators
//! against what Apache Kafka derives. So the subject is printed exactly as
//! `X500Principal.getName()` (RFC 2253) prints it, not as another library would, and the
//! rules follow Kafka's `SslPrincipalMapper`.

use std::fmt;

use regex::Regex;
use rustls_pki_types::CertificateDer;
use x509_parser::asn1_rs::{Class, Tag, ToDer};
use x509_parser::prelude::{AttributeTypeAndValue, X509Name};

use crate::settings::keys::PRINCIPAL_MAPPING_RULES;
use crate::settings::setting;
use crate::TlsError;

/// Kafka's principal name for a client that authenticated with no certificate.
pub const ANONYMOUS: &str = "ANONYMOUS";

/// Kafka's principal name (the part after `User:`) for a TLS client: the mapped subject of
/// its end-entity certificate, or [`ANONYMOUS`] when it sent none (`ssl.client.auth` of
/// `requested` or `none`). Takes what `ServerConnection::peer_certificates()` returns.
pub fn ssl_principal(
    peer_certificates: Option<&[CertificateDer<'_>]>,
    mapper: &PrincipalMapper,
) -> Result<String, TlsError> {
    match peer_certificates.and_then(<[_]>::first) {
        None => Ok(ANONYMOUS.to_owned()),
        Some(cert) => mapper.name(&distinguished_name(cert)?),
    }
}

/// The subject of a DER certificate in RFC 2253 form, as Java's `X500Principal.getName()`
/// prints it: most specific RDN first (`CN=alice,OU=eng,O=Acme,C=US`), the RFC 2253
/// keywords (CN, C, L, ST, O, OU, STREET, DC, UID) and dotted OIDs for other attributes, whose
/// values are then `#` and the hex of their DER (as for any value that is not a string).
pub fn distinguished_name(certificate: &[u8]) -> Result<String, TlsError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(certificate).map_err(|e| TlsError::Certificate(e.to_string()))?;
    rfc2253(cert.subject())
}

/// Java's RFC 2253 keywords (`AVAKeyword` with RFC 2253 compliance); others print as OIDs.
const KEYWORDS: [(&str, &str); 9] = [
    ("2.5.4.3", "CN"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.9", "STREET"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
];

/// The value types Java prints as text (`isDerString`, non-canonical); others print as hex.
const STRING_TAGS: [Tag; 6] = [
    Tag::PrintableString,
    Tag::T61String,
    Tag::Ia5String,
    Tag::GeneralString,
    Tag::BmpString,
    Tag::Utf8String,
];

pub(crate) fn rfc2253(name: &X509Name<'_>) -> Result<String, TlsError> {
    let mut rdns = Vec::new();
    for rdn in name.iter_rdn() {
        // A multi-valued RDN prints its values in their encoded order, joined by '+'.
        let values = rdn.iter().map(attribute).collect::<Result<Vec<_>, _>>()?;
        rdns.push(values.join("+"));
    }
    rdns.reverse();
    Ok(rdns.join(","))
}

fn attribute(ava: &AttributeTypeAndValue<'_>) -> Result<String, TlsError> {
    let oid = ava.attr_type().to_id_string();
    let value = ava.attr_value();
    let keyword = KEYWORDS.iter().find(|(o, _)| *o == oid).map(|(_, k)| *k);
    let is_string = value.header.class() == Class::Universal
        && value.header.is_primitive()
        && STRING_TAGS.contains(&value.header.tag());
    match keyword {
        // Java decodes every string type's bytes as UTF-8 (even BMPString), and so do we.
        Some(keyword) if is_string => {
            Ok(format!("{keyword}={}", escape(&String::from_utf8_lossy(value.data))))
        }
        _ => {
            let der = value
                .to_der_vec()
                .map_err(|e| TlsError::Certificate(format!("subject attribute {oid}: {e}")))?;
            let hex: String = der.iter().map(|b| format!("{b:02x}")).collect();
            Ok(format!("{}=#{hex}", keyword.unwrap_or(&oid)))
        }
    }
}

/// RFC 2253 escaping as Java does it: a backslash before `,=+<>#;"\` anywhere and before
/// leading or trailing spaces (and carriage returns), `\00` for NUL, everything else as is.
pub(crate) fn escape(value: &str) -> String {
    let mut chars = Vec::with_capacity(value.len());
    for c in value.chars() {
        match c {
            ',' | '=' | '+' | '<' | '>' | '#' | ';' | '"' | '\\' => chars.extend(['\\', c]),
            '\0' => chars.extend(['\\', '0', '0']),
            c => chars.push(c),
        }
    }
    let blank = |c: &&char| **c == ' ' || **c == '\r';
    let lead = chars.iter().take_while(blank).count();
    let trail = chars.len() - chars.iter().rev().take_while(blank).count();
    let mut out = String::with_capacity(chars.len() + 2);
    for (i, c) in chars.into_iter().enumerate() {
        if i < lead || i >= trail {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `ssl.principal.mapping.rules`: a comma-separated list of `DEFAULT` (the distinguished
/// name unchanged) and `RULE:pattern/replacement/` with an optional `L` or `U` after it
/// (lower or upper case the result). The first rule whose pattern matches the whole name
/// gives the principal; if none does, the client is refused ([`TlsError::NoMatchingRule`]).
///
/// As in Kafka: `\` escapes a `/` (or anything) inside a pattern or replacement, so patterns
/// may hold commas; `$1`, `$12`, `${name}` in the replacement are groups (a `$n` beyond the
/// pattern's groups is kept as text); a blank rule between commas is ignored. Patterns use
/// Rust's `regex` syntax, which is Java's for what rules use (groups, classes, lazy
/// quantifiers, anchors) but has no look-around or back-references: such a pattern is refused
/// when the rules are parsed, as is anything else Kafka refuses.
#[derive(Clone)]
pub struct PrincipalMapper {
    rules: Vec<Rule>,
    text: String,
}

#[derive(Clone)]
enum Rule {
    Default,
    Rewrite { whole: Regex, each: Regex, replacement: String, case: Case },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Case {
    Keep,
    Lower,
    Upper,
}

impl Default for PrincipalMapper {
    /// Kafka's default, `DEFAULT`: the distinguished name is the principal.
    fn default() -> Self {
        Self { rules: vec![Rule::Default], text: "DEFAULT".to_owned() }
    }
}

impl fmt::Debug for PrincipalMapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrincipalMapper({:?})", self.text)
    }
}

impl fmt::Display for PrincipalMapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl PrincipalMapper {
    /// Parses the rules; errors name `ssl.principal.mapping.rules` and the rule.
    pub fn parse(rules: &str) -> Result<Self, TlsError> {
        let text = rules.trim();
        let mut parsed = Vec::new();
        let mut rest = text;
        loop {
            rest = rest.trim_start();
            if rest.is_empty() {
                break;
            }
            let (rule, after) = if let Some(after) = rest.strip_prefix("DEFAULT") {
                (Some(Rule::Default), after)
            } else if let Some(body) = rest.strip_prefix("RULE:") {
                match rewrite(body).map_err(|reason| invalid(rest, reason))? {
                    Some((rule, after)) => (Some(rule), after),
                    None => return Err(invalid(rest, "expected RULE:pattern/replacement/[LU]")),
                }
            } else {
                (None, rest)
            };
            // Up to the next comma there may be only blanks.
            let (tail, next) = match after.find(',') {
                Some(i) => (&after[..i], &after[i + 1..]),
                None => (after, ""),
            };
            if !tail.trim().is_empty() {
                let token = &rest[..rest.len() - after.len() + tail.len()];
                let reason = match rule {
                    Some(_) => format!("unexpected {:?} after the rule", tail.trim()),
                    None => "expected DEFAULT or RULE:pattern/replacement/[LU]".to_owned(),
                };
                return Err(invalid(token.trim(), reason));
            }
            parsed.extend(rule);
            rest = next;
        }
        Ok(Self { rules: parsed, text: text.to_owned() })
    }

    /// The principal name for a distinguished name (RFC 2253, as [`distinguished_name`]).
    pub fn name(&self, dn: &str) -> Result<String, TlsError> {
        self.rules
            .iter()
            .find_map(|rule| rule.apply(dn))
            .ok_or_else(|| TlsError::NoMatchingRule { dn: dn.to_owned(), rules: self.text.clone() })
    }
}

fn invalid(rule: &str, reason: impl Into<String>) -> TlsError {
    setting(PRINCIPAL_MAPPING_RULES, format!("invalid rule `{rule}`: {}", reason.into()))
}

/// Parses what follows `RULE:` up to and including the optional `L`/`U`; `None` when the
/// `pattern/replacement/` shape is not there.
fn rewrite(body: &str) -> Result<Option<(Rule, &str)>, String> {
    let Some((pattern, after)) = until_slash(body) else {
        return Ok(None);
    };
    let Some((replacement, after)) = until_slash(after) else {
        return Ok(None);
    };
    let (case, after) = match after.as_bytes().first() {
        Some(b'L') => (Case::Lower, &after[1..]),
        Some(b'U') => (Case::Upper, &after[1..]),
        _ => (Case::Keep, after),
    };
    // `\/` is how a rule writes a '/' in its pattern; the regex wants it plain.
    let pattern = pattern.replace("\\/", "/");
    let compile = |p: &str| Regex::new(p).map_err(|e| format!("pattern {pattern:?}: {e}"));
    let whole = compile(&format!(r"\A(?:{pattern})\z"))?;
    let each = compile(&pattern)?;
    let replacement = parse_replacement(replacement, &each)?;
    let rule = Rule::Rewrite { whole, each, replacement, case };
    Ok(Some((rule, after)))
}

/// Splits at the first `/` not escaped by `\`; the text before keeps its escapes.
fn until_slash(s: &str) -> Option<(&str, &str)> {
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next()?;
            }
            '/' => return Some((&s[..i], &s[i + 1..])),
            _ => {}
        }
    }
    None
}

/// Java's `Matcher.replaceAll` replacement syntax, with Kafka's leniency, rewritten into the
/// `regex` crate's: `\\c` is `c`, `$n` takes as many digits as name an existing group, and a
/// `$n` whose first digit is past the last group is literal text (Kafka escapes those before
/// Java sees them). Groups become `${n}` / `${name}`, a literal `$` becomes `$$`.
fn parse_replacement(text: &str, regex: &Regex) -> Result<String, String> {
    let groups = regex.captures_len() - 1;
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        match (chars[i], chars.get(i + 1).copied()) {
            ('\\', None) => return Err("replacement ends in a lone \\".into()),
            ('\\', Some(c)) => {
                if c == '$' {
                    out.push('$');
                }
                out.push(c);
                i += 2;
            }
            ('$', Some(d @ '0'..='9')) => {
                let mut group = d as usize - '0' as usize;
                if group > groups {
                    if groups == 0 {
                        return Err(format!("replacement uses ${group} but the pattern has no groups"));
                    }
                    out.push_str("$$"); // Then the digits, as text.
                    i += 1;
                    continue;
                }
                i += 2;
                while let Some(d) = chars.get(i).and_then(|c| c.to_digit(10)) {
                    let more = group * 10 + d as usize;
                    if more > groups {
                        break;
                    }
                    group = more;
                    i += 1;
                }
                out.push_str(&format!("${{{group}}}"));
            }
            ('$', Some('{')) => {
                let name: String = chars[i + 2..].iter().take_while(|c| **c != '}').collect();
                let len = name.chars().count();
                if chars.get(i + 2 + len) != Some(&'}') {
                    return Err("replacement has ${ without }".into());
                }
                if !regex.capture_names().any(|n| n == Some(name.as_str())) {
                    return Err(format!("replacement names group {name:?}, which the pattern lacks"));
                }
                out.push_str(&format!("${{{name}}}"));
                i += 3 + len;
            }
            ('$', _) => {
                return Err(
                    "a $ in the replacement must be followed by a group number or {name} (write \\$ for a $)"
                        .into(),
                )
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

impl Rule {
    fn apply(&self, dn: &str) -> Option<String> {
        let Rule::Rewrite { whole, each, replacement, case } = self else {
            return Some(dn.to_owned());
        };
        if !whole.is_match(dn) {
            return None;
        }
        // Java's `replaceAll`: every match of the pattern in the name is replaced. Unlike
        // `Regex::replace_all`, Java also takes an empty match right after a non-empty one
        // (`.*` replaces "abc" twice), so the search is stepped by hand.
        let (mut out, mut copied, mut from) = (String::with_capacity(dn.len()), 0, 0);
        while let Some(caps) = each.captures_at(dn, from) {
            let Some(found) = caps.get(0) else { break };
            out.push_str(&dn[copied..found.start()]);
            caps.expand(replacement, &mut out);
            copied = found.end();
            from = match dn[found.end()..].chars().next() {
                _ if !found.is_empty() => found.end(),
                Some(c) => found.end() + c.len_utf8(),
                None => break,
            };
        }
        out.push_str(&dn[copied..]);
        Some(match case {
            Case::Keep => out,
            Case::Lower => out.to_lowercase(),
            Case::Upper => out.to_uppercase(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use x509_parser::prelude::FromDer;

    fn map(rules: &str, dn: &str) -> Result<String, TlsError> {
        PrincipalMapper::parse(rules)?.name(dn)
    }

    #[test]
    fn default_rule_is_the_distinguished_name() {
        let dn = "CN=alice,OU=eng,O=Acme,C=US";
        assert_eq!(PrincipalMapper::default().name(dn).unwrap(), dn);
        assert_eq!(map("DEFAULT", dn).unwrap(), dn);
        assert_eq!(map("  DEFAULT  ", dn).unwrap(), dn);
    }

    #[test]
    fn rules_are_tried_in_order() {
        let rules = "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/, RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,\n RULE:^cn=(.*?),ou=(.*?),dc=(.*?),dc=(.*?)$/$1@$2/U ,RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U, DEFAULT";
        let m = PrincipalMapper::parse(rules).unwrap();
        assert_eq!(m.name("CN=kafka-broker,OU=ServiceUsers,O=Acme,C=US").unwrap(), "kafka-broker");
        assert_eq!(m.name("CN=Duke,OU=JavaSoft,O=Sun,L=Santa Clara,ST=CA,C=US").unwrap(), "duke@javasoft");
        assert_eq!(m.name("cn=duke,ou=javasoft,dc=example,dc=com").unwrap(), "DUKE@JAVASOFT");
        assert_eq!(m.name("OU=x,CN=someone.else,O=y").unwrap(), "SOMEONE.ELSE");
        assert_eq!(m.name("O=nobody").unwrap(), "O=nobody");
    }

    #[test]
    fn no_matching_rule_is_an_error() {
        let err = map("RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/", "CN=alice,OU=eng").unwrap_err();
        assert!(matches!(err, TlsError::NoMatchingRule { .. }), "{err}");
        assert!(err.to_string().contains("CN=alice,OU=eng"), "{err}");
        // An empty list has no rule at all, as in Kafka.
        assert!(map("", "CN=a").is_err());
    }

    #[test]
    fn escapes_commas_and_back_references() {
        // An escaped '/' in the pattern and in the replacement.
        assert_eq!(map(r"RULE:^CN=(.*?)\/(.*?),.*$/$1\/$2/", "CN=a/b,O=c").unwrap(), "a/b");
        // The pattern may hold commas and letters of DEFAULT/L/U.
        assert_eq!(map("RULE:^CN=([^,ADEFLTU,]+)(,.*|$)/$1/", "CN=bob,O=x").unwrap(), "bob");
        // $2 with one group stays text; $12 with 1 group is $1 then '2'.
        assert_eq!(map("RULE:^CN=(.*)$/$2$1/", "CN=x").unwrap(), "$2x");
        assert_eq!(map("RULE:^CN=(.*)$/$12/", "CN=x").unwrap(), "x2");
        assert_eq!(map("RULE:^CN=(?<user>[^,]*).*$/u-${user}/", "CN=z,O=q").unwrap(), "u-z");
        assert_eq!(map(r"RULE:^CN=(.*)$/\$$1/", "CN=x").unwrap(), "$x");
        // As Java's replaceAll, a pattern that also matches the empty end is replaced twice.
        assert_eq!(map("RULE:.*/x/", "CN=a").unwrap(), "xx");
        assert_eq!(map("RULE:(.*)/<$1>/", "CN=a").unwrap(), "<CN=a><>");
        // Not a full match: the rule does not apply.
        assert!(map("RULE:CN=a/b/", "CN=ab").is_err());
    }

    #[test]
    fn malformed_rules_are_refused() {
        for rules in [
            "DEFAULTS",
            "DEFAULT/L",
            "DEFAULT/U",
            "RULE:CN=(.*?),OU=ServiceUsers.*/$1",
            "RULE:CN=(.*?),OU=ServiceUsers.*/$1/L/U",
            "RULE:CN=(.*?),OU=ServiceUsers.*/L",
            "RULE:CN=(.*?),OU=ServiceUsers.*/U",
            "RULE:CN=(.*?),OU=ServiceUsers.*/$1/LU",
            "RULE:CN=(.*?)/$1/, nonsense",
            "RULE:CN=(/x/",
            "RULE:CN=.*/$1/",
            "RULE:CN=(.*)/$x/",
            "RULE:CN=(.*)/${nope}/",
            "RULE:CN=(.*)/x\\/",
        ] {
            match PrincipalMapper::parse(rules) {
                Err(TlsError::Setting { setting, .. }) => {
                    assert_eq!(setting, "ssl.principal.mapping.rules", "{rules}")
                }
                other => panic!("{rules:?} gave {other:?}"),
            }
        }
        // Blank rules between commas are ignored.
        assert_eq!(map(" , DEFAULT,, ", "CN=a").unwrap(), "CN=a");
    }

    #[test]
    fn escaping_follows_java() {
        assert_eq!(escape("alice"), "alice");
        assert_eq!(escape("a,b+c=d"), r"a\,b\+c\=d");
        assert_eq!(escape("#1 <x>; \"q\" \\"), r#"\#1 \<x\>\; \"q\" \\"#);
        assert_eq!(escape(" lead and trail  "), r"\ lead and trail\ \ ");
        assert_eq!(escape("  "), r"\ \ ");
        assert_eq!(escape("nul\0"), r"nul\00");
        assert_eq!(escape("Zürich"), "Zürich");
    }

    /// DER builders for names rcgen cannot make (multi-valued RDNs, repeated types).
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        assert!(content.len() < 128);
        let mut v = vec![tag, content.len() as u8];
        v.extend_from_slice(content);
        v
    }
    fn ava(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        tlv(0x30, &[tlv(0x06, oid), tlv(tag, value)].concat())
    }
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    const OU: &[u8] = &[0x55, 0x04, 0x0b];
    const DC: &[u8] = &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19];
    const EMAIL: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01];
    const SERIAL: &[u8] = &[0x55, 0x04, 0x05];

    fn format(rdns: &[Vec<u8>]) -> String {
        let der = tlv(0x30, &rdns.concat());
        let (_, name) = X509Name::from_der(&der).unwrap();
        rfc2253(&name).unwrap()
    }

    #[test]
    fn names_print_as_java_prints_them() {
        let name = format(&[
            tlv(0x31, &ava(DC, 0x16, b"com")),
            tlv(0x31, &ava(DC, 0x16, b"example")),
            tlv(0x31, &[ava(OU, 0x0c, b"eng"), ava(OU, 0x13, b"ops")].concat()),
            tlv(0x31, &ava(EMAIL, 0x16, b"a@b")),
            tlv(0x31, &ava(SERIAL, 0x13, b"42")),
            tlv(0x31, &ava(CN, 0x0c, b"alice, jr")),
        ]);
        assert_eq!(
            name,
            r"CN=alice\, jr,2.5.4.5=#13023432,1.2.840.113549.1.9.1=#1603614062,OU=eng+OU=ops,DC=example,DC=com"
        );
        // A CN that is not a string type prints as hex under its keyword.
        assert_eq!(format(&[tlv(0x31, &ava(CN, 0x04, b"x"))]), "CN=#040178");
        assert_eq!(format(&[]), "");
    }
}
