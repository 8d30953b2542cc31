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
