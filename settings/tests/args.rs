//! The flag parser: `--help`/`-h`, and the private key held in a buffer wiped on drop.

use icr_app_settings::{Parsed, Settings, usage};
use zeroize::Zeroizing;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| (*a).to_owned()).collect()
}

#[test]
fn help_in_place_of_a_flag_asks_for_the_usage() {
    for list in [
        &["--help"][..],
        &["-h"],
        &["--app-id", "app-1", "--help"],
        &["--help", "--bogus"],
    ] {
        assert_eq!(Settings::parse_args(args(list)).unwrap(), Parsed::Help, "{list:?}");
    }
    // As a flag's value it is that value, not a request for help.
    match Settings::parse_args(args(&["--app-id", "--help"])).unwrap() {
        Parsed::Run(settings) => assert_eq!(settings.app_id.as_deref(), Some("--help")),
        Parsed::Help => panic!("--help as the value of --app-id"),
    }
    // Anything else unknown is still an error, which names --help.
    let e = Settings::parse_args(args(&["--bogus"])).unwrap_err().to_string();
    assert!(e.contains("unknown flag `--bogus`") && e.contains("--help"), "{e}");
}

#[test]
fn the_usage_names_every_flag_its_variable_and_the_key_forms() {
    let text = usage("my_program");
    assert!(text.starts_with("Usage: my_program "), "{text}");
    for name in [
        "--base-url",
        "ICR_BASE_URL",
        "--app-id",
        "ICR_APP_ID",
        "--private-key",
        "ICR_PRIVATE_KEY",
        "--installation",
        "ICR_INSTALLATION_ID",
        "--organization",
        "ICR_ORGANIZATION_ID",
        "--api-version",
        "ICR_API_VERSION",
        "--help",
        "base64",
    ] {
        assert!(text.contains(name), "{name}: {text}");
    }
}

#[test]
fn the_private_key_is_held_in_a_buffer_wiped_on_drop() {
    let Parsed::Run(settings) = Settings::parse_args(args(&["--private-key", "/some/key.pem"])).unwrap() else {
        panic!("no settings");
    };
    // A type check: the field is `Zeroizing`, from the moment the flag is read.
    let key: &Option<Zeroizing<String>> = &settings.private_key;
    assert_eq!(key.as_deref().map(String::as_str), Some("/some/key.pem"));
    assert!(!format!("{settings:?}").contains("/some/key.pem"));
}

#[test]
fn an_organization_in_place_of_an_installation() {
    let Parsed::Run(settings) = Settings::parse_args(args(&["--organization", "org-1"])).unwrap() else {
        panic!("no settings");
    };
    // A flag naming whom to act as wins over both variables: neither is read.
    assert_eq!(settings.installation, None);
    assert_eq!(settings.organization.as_deref(), Some("org-1"));
    match settings.scope().unwrap() {
        icr_app_core::TokenScope::Organization(org) => assert_eq!(org.as_str(), "org-1"),
        other => panic!("{other:?}"),
    }
    assert!(format!("{settings:?}").contains("org-1"));
    let Parsed::Run(settings) = Settings::parse_args(args(&["--installation", "inst-1"])).unwrap() else {
        panic!("no settings");
    };
    assert_eq!(settings.organization, None);
    assert!(matches!(
        settings.scope().unwrap(),
        icr_app_core::TokenScope::Installation(i) if i.as_str() == "inst-1"
    ));
    // Both flags name whom to act as twice.
    let e = Settings::parse_args(args(&["--installation", "inst-1", "--organization", "org-1"]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("--installation") && e.contains("--organization"), "{e}");
    // An id that cannot go into a path is refused, by name.
    let Parsed::Run(settings) = Settings::parse_args(args(&["--organization", ""])).unwrap() else {
        panic!("no settings");
    };
    assert!(
        settings
            .organization()
            .unwrap_err()
            .to_string()
            .contains("organization id")
    );
}
