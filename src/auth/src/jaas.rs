//! Kafka's `sasl.jaas.config` value, as its `JaasConfig` reads it: exactly one login module,
//! `<class> <flag> [name=value ...];`, values bare or double-quoted (`\` escapes the next
//! character inside quotes). A broker reads its inter-broker login (`username`, `password`)
//! and its listener-local PLAIN users (`user_<name>="<password>"`) from it.
//!
//! Deliberately not here: login modules' behaviour. The class name is kept so the caller can
//! check it names a module it understands.

use std::collections::BTreeMap;
use std::fmt;

/// Login module control flags (JAAS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlFlag {
    Required,
    Requisite,
    Sufficient,
    Optional,
}

/// One parsed `sasl.jaas.config`.
#[derive(Clone, PartialEq, Eq)]
pub struct JaasConfig {
    pub login_module: String,
    pub flag: ControlFlag,
    pub options: BTreeMap<String, String>,
}

impl fmt::Debug for JaasConfig {
    /// Option values are passwords more often than not: only their names are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JaasConfig")
            .field("login_module", &self.login_module)
            .field("flag", &self.flag)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl JaasConfig {
    /// `user_<name>` options: PLAIN users a broker's listener accepts (Kafka's
    /// PlainLoginModule convention), as (name, password).
    pub fn users(&self) -> impl Iterator<Item = (&str, &str)> {
        self.options
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("user_").filter(|n| !n.is_empty()).map(|n| (n, v.as_str())))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sasl.jaas.config: {0}")]
pub struct JaasError(String);

fn err(s: impl Into<String>) -> JaasError {
    JaasError(s.into())
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Equals,
    Semicolon,
}

fn tokens(s: &str) -> Result<Vec<Token>, JaasError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '=' => {
                chars.next();
                out.push(Token::Equals);
            }
            ';' => {
                chars.next();
                out.push(Token::Semicolon);
            }
            '"' => {
                chars.next();
                let mut v = String::new();
                loop {
                    match chars.next() {
                        None => return Err(err("a quoted value is not closed")),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e) => v.push(e),
                            None => return Err(err("a quoted value ends in '\\'")),
                        },
                        Some(x) => v.push(x),
                    }
                }
                out.push(Token::Quoted(v));
            }
            _ => {
                let mut w = String::new();
                while let Some(&x) = chars.peek() {
                    if x.is_whitespace() || x == '=' || x == ';' || x == '"' {
                        break;
                    }
                    w.push(x);
                    chars.next();
                }
                out.push(Token::Word(w));
            }
        }
    }
    Ok(out)
}

/// Parses one `sasl.jaas.config` value.
pub fn parse(value: &str) -> Result<JaasConfig, JaasError> {
    let mut t = tokens(value)?.into_iter().peekable();
    let Some(Token::Word(login_module)) = t.next() else {
        return Err(err("expected a login module class name first"));
    };
    let flag = match t.next() {
        Some(Token::Word(f)) => match f.to_ascii_lowercase().as_str() {
            "required" => ControlFlag::Required,
            "requisite" => ControlFlag::Requisite,
            "sufficient" => ControlFlag::Sufficient,
            "optional" => ControlFlag::Optional,
            _ => {
                return Err(err(format!(
                    "'{f}' is not a control flag (required, requisite, sufficient, optional)"
                )))
            }
        },
        _ => return Err(err(format!("expected a control flag after {login_module}"))),
    };
    let mut options = BTreeMap::new();
    loop {
        match t.next() {
            Some(Token::Semicolon) => break,
            Some(Token::Word(name)) => {
                if t.next() != Some(Token::Equals) {
                    return Err(err(format!("option {name} has no '=' and value")));
                }
                let value = match t.next() {
                    Some(Token::Word(v)) | Some(Token::Quoted(v)) => v,
                    _ => return Err(err(format!("option {name} has no value"))),
                };
                if options.insert(name.clone(), value).is_some() {
                    return Err(err(format!("option {name} is set twice")));
                }
            }
            None => return Err(err("the login module's entry must end with ';'")),
            Some(_) => return Err(err("expected an option name=value or ';'")),
        }
    }
    if t.next().is_some() {
        return Err(err("exactly one login module is allowed"));
    }
    Ok(JaasConfig { login_module, flag, options })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kafkas_forms() {
        let c = parse(
            r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="broker" password="s3 \"cr\"et" user_broker="pw1" user_alice=pw2;"#,
        )
        .expect("parse");
        assert_eq!(c.login_module, "org.apache.kafka.common.security.plain.PlainLoginModule");
        assert_eq!(c.flag, ControlFlag::Required);
        assert_eq!(c.options["username"], "broker");
        assert_eq!(c.options["password"], r#"s3 "cr"et"#);
        assert_eq!(c.users().collect::<Vec<_>>(), vec![("alice", "pw2"), ("broker", "pw1")]);
        assert!(!format!("{c:?}").contains("pw1"), "Debug hides values");
        let c =
            parse("org.apache.kafka.common.security.scram.ScramLoginModule REQUIRED;").expect("no options");
        assert!(c.options.is_empty());
    }

    #[test]
    fn refuses_what_kafka_refuses() {
        for bad in [
            "",
            "M required username=\"a\"",
            "M maybe;",
            "M required username;",
            "M required username=;",
            "M required username=\"a;",
            "M required a=1 a=2;",
            "M required; N required;",
            "required;",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
