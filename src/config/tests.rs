use std::collections::HashMap;

use super::*;

const NOW: UnixTime = UnixTime(1_795_910_400);

fn load(toml: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signet.toml");
    std::fs::write(&path, toml).unwrap();
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let env = move |k: &str| vars.get(k).cloned();
    Config::load(
        &Sources {
            file: Some(&path),
            env: &env,
        },
        NOW,
    )
}

fn err(toml: &str, vars: &[(&str, &str)]) -> String {
    load(toml, vars).unwrap_err().to_string()
}

#[test]
fn defaults_give_the_four_purposes() {
    let c = load("", &[]).unwrap();
    let names: Vec<_> = c.purposes.keys().cloned().collect();
    assert_eq!(
        names,
        [
            "access_token",
            "magic_link",
            "refresh_token",
            "reset_password_link"
        ]
    );
    let at = &c.purposes["access_token"];
    assert_eq!(at.algorithms, [Algorithm::RS256]);
    assert_eq!(at.token_ttl, Duration::from_secs(600));
    assert_eq!(at.typ, "at+jwt");
    assert_eq!(
        c.purposes["refresh_token"].token_ttl,
        Duration::from_secs(7 * 86_400)
    );
    assert_eq!(c.jwks.max_age, Duration::from_secs(300));
    assert_eq!(c.store.path, PathBuf::from("keys"));
    assert_eq!(c.server.admin_addr.to_string(), "127.0.0.1:8081");
}

#[test]
fn file_then_environment_override_defaults() {
    let c = load(
        "issuer = \"https://auth.example.com\"\n[jwks]\nmax_age = \"2m\"\n[purposes.access_token]\nalgorithms = [\"ES256\", \"EdDSA\"]\n[purposes.magic_link]\nenabled = false\n[purposes.api_key]\ntoken_ttl = \"1h\"\n",
        &[("SIGNET_JWKS_MAX_AGE", "1m")],
    )
    .unwrap();
    assert_eq!(c.issuer, "https://auth.example.com");
    assert_eq!(
        c.jwks.max_age,
        Duration::from_secs(60),
        "environment beats the file"
    );
    assert_eq!(
        c.purposes["access_token"].algorithms,
        [Algorithm::ES256, Algorithm::EdDSA]
    );
    assert_eq!(
        c.purposes["access_token"].token_ttl,
        Duration::from_secs(600),
        "unset fields keep defaults"
    );
    assert!(!c.purposes.contains_key("magic_link"));
    assert_eq!(c.purposes["api_key"].typ, "api-key+jwt");
    assert!(c.store.listen, "replicas LISTEN unless told not to");
    // Links are single-use by default, and nothing else is.
    assert!(!c.purposes["access_token"].single_use);
    assert!(!c.purposes["api_key"].single_use);
    let d = load("", &[]).unwrap();
    assert!(d.purposes["magic_link"].single_use && d.purposes["reset_password_link"].single_use);
    assert!(!d.purposes["refresh_token"].single_use);
    // The revocation document's max-age: 15 s, or jwks.max_age if shorter.
    assert_eq!(d.jwks.revocations_max_age, Duration::from_secs(15));
    assert_eq!(c.jwks.revocations_max_age, Duration::from_secs(15));
    let short = load("[jwks]\nmax_age = \"5s\"\n", &[]).unwrap();
    assert_eq!(short.jwks.revocations_max_age, Duration::from_secs(5));
    let c = load(
        "[store]\nlisten = true\n",
        &[("SIGNET_STORE_LISTEN", "false")],
    )
    .unwrap();
    assert!(!c.store.listen);
}

#[test]
fn bad_values_name_the_field_and_the_fix() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: &[Case<'_>] = &[
        (
            "[jwks]\nmax_age = \"5 parsecs\"\n",
            &[],
            &["jwks.max_age", "\"10m\""],
        ),
        (
            "",
            &[("SIGNET_JWKS_MAX_AGE", "soon")],
            &["SIGNET_JWKS_MAX_AGE"],
        ),
        (
            "[purposes.access_token]\nrotate = \"0 0 1 * *\"\n",
            &[],
            &["purposes.access_token.rotate", "six fields"],
        ),
        (
            "[purposes.access_token]\nalgorithms = [\"HS256\"]\n",
            &[],
            &["purposes.access_token.algorithms", "EdDSA"],
        ),
        (
            "[purposes.access_token]\nalgorithms = [\"none\"]\n",
            &[],
            &["unsupported algorithm"],
        ),
        (
            "[purposes.api_key]\nalgorithms = [\"EdDSA\"]\n",
            &[],
            &["purposes.api_key.token_ttl", "required"],
        ),
        (
            "[purposes.access_token]\nrsa_bits = 1024\n",
            &[],
            &["rsa_bits", "2048"],
        ),
        (
            "[server]\npublic_addr = \"localhost\"\n",
            &[],
            &["server.public_addr", "host:port"],
        ),
        ("colour = \"blue\"\n", &[], &["unknown field", "colour"]),
        (
            "[jwks]\nmax_age = \"1m\"\nrevocations_max_age = \"2m\"\n",
            &[],
            &["jwks.revocations_max_age", "at most jwks.max_age (60s)"],
        ),
        (
            "[jwks]\nrevocations_max_age = \"0s\"\n",
            &[],
            &["jwks.revocations_max_age", "at least 1s"],
        ),
        (
            "[purposes.magic_link]\nsingle_use = \"yes\"\n",
            &[],
            &["single_use", "boolean"],
        ),
        (
            "",
            &[("SIGNET_STORE_LISTEN", "yes")],
            &["SIGNET_STORE_LISTEN", "true or false"],
        ),
        ("[store]\nlisten = \"off\"\n", &[], &["listen", "boolean"]),
        (
            "issuer = \"auth.example.com\"\n",
            &[],
            &["issuer", "http(s) URL"],
        ),
    ];
    for (toml, vars, needles) in cases {
        let msg = err(toml, vars);
        for n in *needles {
            assert!(msg.contains(n), "{toml:?}: {msg:?} lacks {n:?}");
        }
    }
}

#[test]
fn configurations_that_break_the_lifecycle_rules_are_refused() {
    // max_age longer than a rotation period (hourly).
    let msg = err(
        "[jwks]\nmax_age = \"2h\"\n[purposes.access_token]\nrotate = \"0 0 * * * *\"\n",
        &[],
    );
    assert!(
        msg.contains("jwks.max_age") && msg.contains("rotation period"),
        "{msg}"
    );
    // A 7-day token with hourly rotation would need 168 retired keys published.
    let msg = err("[purposes.refresh_token]\nrotate = \"0 0 * * * *\"\n", &[]);
    assert!(
        msg.contains("purposes.refresh_token.token_ttl") && msg.contains("Shorten token_ttl"),
        "{msg}"
    );
}

#[test]
fn the_lead_and_the_retention_include_the_poll_interval() {
    // Measured in review: another process sees a write up to poll_interval
    // late, so a key must be published max_age + poll_interval before it
    // signs. With a 20 s poll and a 10 s rotation that cannot hold.
    let scenario = "leeway = \"1s\"\n[jwks]\nmax_age = \"2s\"\n[store]\npoll_interval = \"20s\"\n[purposes.access_token]\ntoken_ttl = \"10s\"\nrotate = \"*/10 * * * * *\"\n[purposes.refresh_token]\nenabled = false\n[purposes.magic_link]\nenabled = false\n[purposes.reset_password_link]\nenabled = false\n";
    let msg = err(scenario, &[]);
    assert!(
        msg.contains("store.poll_interval") && msg.contains("rotation period of access_token"),
        "{msg}"
    );
    // The same timings with an hourly rotation are accepted, and the policy
    // carries the poll interval into the lead and the retention.
    let hourly = scenario.replace("*/10 * * * * *", "0 0 * * * *");
    let c = load(&hourly, &[]).unwrap();
    let p = c.policy("access_token").unwrap();
    assert_eq!(p.lead(), Duration::from_secs(22));
    assert_eq!(p.retention(), Duration::from_secs(10 + 1 + 2 + 20));
    // A poll interval that pushes the retention past 8 periods is refused too.
    let msg = err(
        &hourly.replace("poll_interval = \"20s\"", "poll_interval = \"9h\""),
        &[],
    );
    assert!(msg.contains("store.poll_interval"), "{msg}");
}

#[test]
fn the_effective_configuration_renders_as_toml() {
    let c = load("", &[]).unwrap();
    let text = c.to_toml();
    let back: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(
        back["purposes"]["access_token"]["typ"].as_str(),
        Some("at+jwt")
    );
    assert_eq!(back["jwks"]["max_age"].as_str(), Some("5m"));
}

#[test]
fn a_default_issuer_follows_the_public_address() {
    let c = load(
        "[server]\npublic_addr = \"127.0.0.1:9000\"\nadmin_addr = \"127.0.0.1:9001\"\n",
        &[],
    )
    .unwrap();
    assert_eq!(c.issuer, "http://127.0.0.1:9000");
    let mut c = load("", &[]).unwrap();
    c.set_public_addr("0.0.0.0:7000".parse().unwrap());
    assert_eq!(c.issuer, "http://127.0.0.1:7000");
    let mut c = load("issuer = \"https://auth.example.com\"\n", &[]).unwrap();
    c.set_public_addr("127.0.0.1:7000".parse().unwrap());
    assert_eq!(
        c.issuer, "https://auth.example.com",
        "an explicit issuer never moves"
    );
}

#[test]
fn toml_errors_keep_their_layout_and_durations_read_as_written() {
    let msg = err("[jwks]\nmax_age = 5m\n", &[]);
    assert!(
        msg.contains("\n") && msg.contains("max_age = 5m") && msg.contains('^'),
        "{msg}"
    );
    let c = load(
        "[purposes.refresh_token]\ntoken_ttl = \"40d\"\nrotate = \"0 0 0 1 1 *\"\n",
        &[],
    )
    .unwrap();
    let text = c.to_toml();
    assert!(text.contains("token_ttl = \"40d\""), "{text}");
    assert!(!text.contains("month"), "{text}");
    assert_eq!(super::show_duration(Duration::from_secs(5400)), "90m");
    assert_eq!(super::show_duration(Duration::from_secs(45)), "45s");
}

#[test]
fn the_signer_section_names_the_token_and_takes_its_pin_from_the_environment_only() {
    const TOKEN: &str = "[signer]\nkind = \"pkcs11\"\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\ntoken_label = \"signet\"\n[purposes.magic_link]\nsigner = \"software\"\n";
    let c = load(TOKEN, &[("SIGNET_PKCS11_PIN", "1234")]).unwrap();
    let p = c.signer.pkcs11.as_ref().unwrap();
    assert_eq!(p.token, TokenSelector::Label("signet".into()));
    assert_eq!(p.pin.expose(), "1234");
    // One session per signature that may run at once, and one for the
    // lifecycle, unless set.
    assert_eq!(p.sessions, c.server.limits.signing_concurrency + 1);
    assert_eq!(c.purposes["access_token"].signer, SignerKind::Pkcs11);
    assert_eq!(c.purposes["magic_link"].signer, SignerKind::Software);
    // The PIN is in no rendering of the configuration.
    assert!(!format!("{c:?}").contains("1234"));
    assert!(!c.to_toml().contains("1234"));
    // The default is software, everywhere.
    let d = load("", &[]).unwrap();
    assert_eq!(d.signer.kind, SignerKind::Software);
    assert!(
        d.purposes
            .values()
            .all(|p| p.signer == SignerKind::Software)
    );

    for (toml, vars, field, says) in [
        (TOKEN, &[][..], "SIGNET_PKCS11_PIN", "required"),
        (
            "[signer]\nkind = \"pkcs11\"\nmodule = \"m.so\"\ntoken_label = \"t\"\npin = \"1234\"\n",
            &[("SIGNET_PKCS11_PIN", "1234")][..],
            "signer.pin",
            "SIGNET_PKCS11_PIN",
        ),
        (
            "[signer]\nkind = \"pkcs11\"\ntoken_label = \"t\"\n",
            &[("SIGNET_PKCS11_PIN", "1")][..],
            "signer.module",
            "libsofthsm2.so",
        ),
        (
            "[signer]\nkind = \"pkcs11\"\nmodule = \"m.so\"\n",
            &[("SIGNET_PKCS11_PIN", "1")][..],
            "signer.token_label",
            "--init-token",
        ),
        (
            "[signer]\nkind = \"pkcs11\"\nmodule = \"m.so\"\ntoken_label = \"t\"\nslot = 3\n",
            &[("SIGNET_PKCS11_PIN", "1")][..],
            "signer.slot",
            "not both",
        ),
        (
            "[signer]\nkind = \"pkcs11\"\nmodule = \"m.so\"\ntoken_label = \"t\"\nsessions = 0\n",
            &[("SIGNET_PKCS11_PIN", "1")][..],
            "signer.sessions",
            "1 to 256",
        ),
        (
            "[signer]\nkind = \"hsm\"\n",
            &[][..],
            "signer.kind",
            "\"software\" or \"pkcs11\"",
        ),
        (
            "[signer]\nmodule = \"m.so\"\n",
            &[][..],
            "signer.module",
            "only for a token",
        ),
        (
            "[purposes.access_token]\nsigner = \"pkcs11\"\n",
            &[][..],
            "purposes.access_token.signer",
            "[signer] kind = \"pkcs11\"",
        ),
    ] {
        let e = err(toml, vars);
        assert!(e.contains(field) && e.contains(says), "{toml}: {e}");
        assert!(!e.contains("1234"), "the PIN is in an error: {e}");
    }
}

#[test]
fn the_rendered_configuration_loads_again_to_the_same_rendering() {
    // The second: a disabled built-in purpose (found by the fuzz target
    // `config`: `config check` left it out, so it came back enabled).
    for toml in ["", "[purposes.magic_link]\nenabled = false\n"] {
        let c = load(toml, &[]).unwrap();
        let rendered = c.to_toml();
        let again =
            Config::parse(&rendered, &|_| None, NOW).unwrap_or_else(|e| panic!("{e}\n{rendered}"));
        assert_eq!(again.to_toml(), rendered);
        assert_eq!(
            again.purposes.keys().collect::<Vec<_>>(),
            c.purposes.keys().collect::<Vec<_>>()
        );
    }
}
