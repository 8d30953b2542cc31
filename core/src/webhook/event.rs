//! The event models of a verified delivery: [`WebhookEvent`], [`EventKind`], [`Sender`],
//! [`Transaction`].

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::clock::{Timestamp, rfc3339};
use crate::models::Installation;
use crate::redact::excerpt;

use super::{WebhookError, json_kind};

/// Which event a delivery reports (the payload's `event`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// `installed`: an organization installed the app.
    Installed,
    /// `uninstalled`: an organization removed the app; its tokens stop working.
    Uninstalled,
    /// `suspended`: the installation was suspended.
    Suspended,
    /// `unsuspended`: the installation was resumed.
    Unsuspended,
    /// `newPermissionsAccepted`: an organization admin approved the app's new permissions.
    NewPermissionsAccepted,
    /// `warehouseTransaction`: a warehouse transaction changed (see `transaction`).
    WarehouseTransaction,
    /// `organizationTransaction`: an organization transaction changed (see `transaction`).
    OrganizationTransaction,
    /// An event this SDK version does not know, exactly as sent.
    Other(String),
}

impl EventKind {
    /// The wire form, e.g. `newPermissionsAccepted`.
    pub fn as_str(&self) -> &str {
        match self {
            EventKind::Installed => "installed",
            EventKind::Uninstalled => "uninstalled",
            EventKind::Suspended => "suspended",
            EventKind::Unsuspended => "unsuspended",
            EventKind::NewPermissionsAccepted => "newPermissionsAccepted",
            EventKind::WarehouseTransaction => "warehouseTransaction",
            EventKind::OrganizationTransaction => "organizationTransaction",
            EventKind::Other(s) => s,
        }
    }
}

impl From<&str> for EventKind {
    fn from(s: &str) -> Self {
        match s {
            "installed" => EventKind::Installed,
            "uninstalled" => EventKind::Uninstalled,
            "suspended" => EventKind::Suspended,
            "unsuspended" => EventKind::Unsuspended,
            "newPermissionsAccepted" => EventKind::NewPermissionsAccepted,
            "warehouseTransaction" => EventKind::WarehouseTransaction,
            "organizationTransaction" => EventKind::OrganizationTransaction,
            other => EventKind::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(EventKind::from(&*s))
    }
}

/// The user whose action caused the event (`sender`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sender {
    /// The user id.
    pub id: String,
    /// The user's e-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The user's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    /// A URL of the user's picture (`null` when there is none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_picture: Option<String>,
    /// The API URL of the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Every other field, kept as sent.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The credit transaction a `warehouseTransaction` / `organizationTransaction` event is about.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transaction {
    /// The transaction id.
    pub id: String,
    /// When it was made.
    #[serde(default, with = "rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// When it last changed.
    #[serde(default, with = "rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
    /// `processed`, `failed`, `pending_queue`, ... kept as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The credit action (`type`): `transfer`, `transfer_retire`, `retire`, ... kept as sent.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The number of credits, exactly as sent (a numeric string is accepted too).
    #[serde(
        default,
        deserialize_with = "lenient_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub amount: Option<serde_json::Number>,
    /// The credit the action is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit_id: Option<String>,
    /// Every other field, kept as sent.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// A number, or a string holding one, or null.
fn lenient_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_json::Number>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Number(n) => Ok(Some(n)),
        serde_json::Value::String(s) => match serde_json::from_str::<serde_json::Value>(s.trim()) {
            Ok(serde_json::Value::Number(n)) => Ok(Some(n)),
            _ => Err(serde::de::Error::custom(format!(
                "`{}` is not a number",
                excerpt(&s, 40)
            ))),
        },
        other => Err(serde::de::Error::custom(format!(
            "expected a number, found {}",
            json_kind(&other)
        ))),
    }
}

/// A verified webhook event: the decoded `signedData`, typed, with the whole payload kept.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct WebhookEvent {
    /// What happened.
    pub event: EventKind,
    /// The installation it concerns.
    pub installation: Option<Installation>,
    /// Who did it.
    pub sender: Option<Sender>,
    /// The transaction, for transaction events.
    pub transaction: Option<Transaction>,
    /// `state` (often `""`), kept as sent.
    pub state: Option<String>,
    /// The whole decoded signed payload, nothing lost.
    pub raw: serde_json::Value,
}

impl WebhookEvent {
    /// The installation's id, to pick the installation token to act with.
    pub fn installation_id(&self) -> Option<&str> {
        self.installation.as_ref().map(|i| i.id.as_str())
    }

    /// Parses the decoded `signedData`. Private: only [`verify`] may call it, after the check.
    pub(super) fn from_signed_payload(payload: &[u8]) -> Result<Self, WebhookError> {
        let invalid = |problem: String| WebhookError::SignedPayloadInvalid { problem };
        let text = std::str::from_utf8(payload).map_err(|_| invalid("it is not UTF-8".to_owned()))?;
        let raw: serde_json::Value =
            serde_json::from_str(text).map_err(|e| invalid(format!("it is not JSON ({e})")))?;
        let root = raw
            .as_object()
            .ok_or_else(|| invalid(format!("its root is {}, not an object", json_kind(&raw))))?;
        let event = match root.get("event") {
            Some(serde_json::Value::String(s)) => EventKind::from(s.as_str()),
            Some(other) => return Err(invalid(format!("`event` is {}, not a string", json_kind(other)))),
            None => return Err(invalid("it has no `event` field".to_owned())),
        };
        let installation = field(root, "installation")?;
        let sender = field(root, "sender")?;
        let transaction = field(root, "transaction")?;
        let state = field(root, "state")?;
        Ok(Self {
            event,
            installation,
            sender,
            transaction,
            state,
            raw,
        })
    }
}

/// An optional field of the payload: absent or `null` is `None`, anything else must parse.
fn field<T: serde::de::DeserializeOwned>(
    root: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<Option<T>, WebhookError> {
    match root.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => T::deserialize(v)
            .map(Some)
            .map_err(|e| WebhookError::SignedPayloadInvalid {
                problem: format!("`{name}`: {}", excerpt(&e.to_string(), 200)),
            }),
    }
}
