//! Typed, lenient models of the registry's JSON: unknown fields are ignored (or kept in `extra`),
//! unknown enum values are kept, optional-looking fields are `Option`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::clock::{Timestamp, rfc3339};
use crate::secret::SecretString;

/// A permission level as the API writes it (`VIEW`, `REQUEST`, `WRITE`); unknown levels are kept.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PermissionLevel {
    /// `VIEW`: read access ("Read" in the dashboard).
    View,
    /// `REQUEST`: may ask for actions an organization admin approves.
    Request,
    /// `WRITE`: may act directly.
    Write,
    /// A level this SDK version does not know, exactly as sent.
    Other(String),
}

impl PermissionLevel {
    /// The wire form, e.g. `VIEW`.
    pub fn as_str(&self) -> &str {
        match self {
            PermissionLevel::View => "VIEW",
            PermissionLevel::Request => "REQUEST",
            PermissionLevel::Write => "WRITE",
            PermissionLevel::Other(s) => s,
        }
    }
}

impl From<&str> for PermissionLevel {
    fn from(s: &str) -> Self {
        match s {
            "VIEW" => PermissionLevel::View,
            "REQUEST" => PermissionLevel::Request,
            "WRITE" => PermissionLevel::Write,
            other => PermissionLevel::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for PermissionLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for PermissionLevel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for PermissionLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// Reads the level in place: a known one needs no copy of the string.
        struct Level;

        impl serde::de::Visitor<'_> for Level {
            type Value = PermissionLevel;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a permission level such as \"VIEW\"")
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<PermissionLevel, E> {
                Ok(PermissionLevel::from(s))
            }
        }
        d.deserialize_str(Level)
    }
}

/// Permission name (`organization_info`, `organization_warehouse`, ...) to level.
///
/// A map rather than a struct: the registry adds permissions over time.
pub type Permissions = BTreeMap<String, PermissionLevel>;

/// An app or installation access token (`POST /app/accessTokens`,
/// `POST /app/installations/{id}/accessTokens`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessToken {
    /// The token itself (`crs_...`); redacted in `Debug`.
    pub token: SecretString,
    /// When the registry stops accepting it, on the registry's clock.
    #[serde(with = "rfc3339")]
    pub expires_at: Timestamp,
    /// The token record's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// When it was made, on the registry's clock.
    #[serde(default, with = "rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// When the record last changed.
    #[serde(default, with = "rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
    /// Whether the registry considers it active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_active: Option<bool>,
    /// What it may do.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub permissions: Permissions,
    /// The app it belongs to. In a token an `App` minted, the app's id when the registry
    /// left it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// The installation (installation tokens only). In a token an `App` minted, the
    /// installation the mint was for when the registry left it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<String>,
    /// The organization the installation belongs to (installation tokens only). In a token an
    /// `App` minted for an organization it looked up, that organization when the registry left
    /// it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
}

/// An organization, as in `GET /organizations/{id}` and inside installations and webhooks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    /// The organization id (UUID).
    pub id: String,
    /// The organization's name (`fullName` in API responses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    /// The name as the docs' webhook example writes it (`name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `projectProponent`, `projectDeveloper`, `marketParticipant`, ... kept as sent.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// ISO 3166-1 alpha-2 country code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
    /// The API URL of the organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Whether the organization is public.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_public: Option<bool>,
    /// When it was made.
    #[serde(default, with = "rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// When it last changed.
    #[serde(default, with = "rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
    /// Every other field (`city`, `zip`, `logo`, `website`, ...), kept as sent.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Organization {
    /// `fullName`, else `name`, else the id.
    pub fn display_name(&self) -> &str {
        self.full_name.as_deref().or(self.name.as_deref()).unwrap_or(&self.id)
    }
}

/// An installation of the app on an organization (`GET /app/installations/{id}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Installation {
    /// The installation id.
    pub id: String,
    /// The app id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// The app's URL name, e.g. `climatetrade-connector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_name_id: Option<String>,
    /// When it was installed.
    #[serde(default, with = "rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// When it last changed.
    #[serde(default, with = "rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
    /// The permissions the organization granted.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub permissions: Permissions,
    /// The organization it is installed on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<Organization>,
    /// Where to mint its access tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_tokens_url: Option<String>,
    /// Every other field, kept as sent.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The `pagination` object of list responses.
///
/// Whether pages are 0- or 1-based is not documented (requests use `page=0`, responses show
/// `currentPage: 1`), so the SDK asks for page 0, 1, 2, ... and uses these fields only to decide
/// when to stop.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    /// Total number of items.
    #[serde(default)]
    pub total: Option<u64>,
    /// The page this is.
    #[serde(default)]
    pub current_page: Option<i64>,
    /// How many pages there are.
    #[serde(default)]
    pub page_count: Option<u64>,
    /// The next page, `null` on the last one.
    #[serde(default, deserialize_with = "explicit_null")]
    pub next_page: Option<Option<i64>>,
    /// The previous page.
    #[serde(default)]
    pub prev_page: Option<i64>,
}

/// Reads `null` as an empty map.
fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Permissions, D::Error> {
    Option::<Permissions>::deserialize(d).map(Option::unwrap_or_default)
}

/// Distinguishes a field that is absent (`None`) from one that is `null` (`Some(None)`).
fn explicit_null<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

/// One page of `GET /app/installations`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InstallationsPage {
    /// The page's position in the whole list.
    #[serde(default)]
    pub pagination: Option<Pagination>,
    /// The installations on this page.
    #[serde(default)]
    pub installations: Vec<Installation>,
}

impl InstallationsPage {
    /// Whether another page should be fetched after this one, which was requested with `limit`
    /// and brings the number of installations seen so far to `seen`.
    ///
    /// An empty page ends the list. Otherwise the `pagination` block decides when it says
    /// anything: `total` reached or not, then `nextPage` (`null`, or not after `currentPage`,
    /// ends it). Only when it says nothing does a page shorter than `limit` end the list: a
    /// registry that caps the page size below `limit` must not cut the list short.
    pub fn has_more(&self, limit: u32, seen: usize) -> bool {
        if self.installations.is_empty() {
            return false;
        }
        if let Some(p) = &self.pagination {
            if let Some(total) = p.total {
                return (seen as u64) < total;
            }
            match (p.next_page, p.current_page) {
                (Some(None), _) => return false,
                (Some(Some(next)), Some(cur)) => return next > cur,
                _ => {}
            }
        }
        self.installations.len() >= limit as usize
    }
}

/// The user to create with `POST /app/create/user/organization`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewUser {
    /// The user's e-mail address (required).
    pub email: String,
    /// The user's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    /// A URL of the user's picture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_picture: Option<String>,
}

/// The organization to create with `POST /app/create/user/organization`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewOrganization {
    /// The organization's name (required).
    pub full_name: String,
    /// `projectProponent`, `projectDeveloper`, `marketParticipant`, `validationBody` or `other`.
    #[serde(rename = "type")]
    pub kind: String,
    /// ISO 3166-1 alpha-2 country code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
}

/// The body of `POST /app/create/user/organization`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateUserOrganization {
    /// The user who will own the organization.
    pub user: NewUser,
    /// The organization, with the app installed on it.
    pub organization: NewOrganization,
}

/// The answer to `POST /app/create/user/organization`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreatedUserOrganization {
    /// The installation of the app on the new organization (at least its `id`).
    pub installation: Installation,
    /// Every other field (e.g. `user`, `organization`), kept as sent.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_token_from_docs_example() {
        let json = r#"{"id":"123e4567-e89b-12d3-a456-426614174000","createdAt":"2022-01-01T00:00:00Z",
            "updatedAt":"2022-01-01T00:00:00Z","token":"crs_19c9bd530ccd3e1187eed12dc4edb70abe757fc4c7be9c5b",
            "expiresAt":"2022-02-01T00:00:00Z","isActive":true,
            "permissions":{"organization_info":"VIEW","organization_inventory":"REQUEST","organization_warehouse":"WRITE","future_thing":"ADMIN"},
            "appId":"67890","installationId":"i-1","organizationId":"o-1","newField":[1]}"#;
        let t: AccessToken = serde_json::from_str(json).unwrap();
        assert_eq!(t.token.expose(), "crs_19c9bd530ccd3e1187eed12dc4edb70abe757fc4c7be9c5b");
        assert_eq!(t.expires_at, Timestamp::parse_rfc3339("2022-02-01T00:00:00Z").unwrap());
        assert_eq!(t.permissions["organization_info"], PermissionLevel::View);
        assert_eq!(t.permissions["organization_inventory"], PermissionLevel::Request);
        assert_eq!(t.permissions["organization_warehouse"], PermissionLevel::Write);
        assert_eq!(t.permissions["future_thing"], PermissionLevel::Other("ADMIN".into()));
        assert_eq!(t.installation_id.as_deref(), Some("i-1"));
        assert!(!format!("{t:?}").contains("19c9bd53"));
        // Round trip through the shared-store form keeps the token and the levels.
        let back: AccessToken = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back.token.expose(), t.token.expose());
        assert_eq!(back.permissions, t.permissions);
    }

    #[test]
    fn times_and_levels_are_read_in_place_or_escaped_or_null() {
        // Escaped strings reach the visitors as owned strings, the others borrowed; `null` and
        // absent optional times are `None`; a bad time names the value (cut short) and the fix.
        let json = r#"{"token":"crs_x","expiresAt":"2022-02-01T00:00:00\u005a","createdAt":null,
            "permissions":{"a":"VIEW","b":"\u0057RITE","c":"ADM\u0049N"}}"#;
        let t: AccessToken = serde_json::from_str(json).unwrap();
        assert_eq!(t.expires_at, Timestamp::parse_rfc3339("2022-02-01T00:00:00Z").unwrap());
        assert_eq!((t.created_at, t.updated_at), (None, None));
        assert_eq!(t.permissions["a"], PermissionLevel::View);
        assert_eq!(t.permissions["b"], PermissionLevel::Write);
        assert_eq!(t.permissions["c"], PermissionLevel::Other("ADMIN".into()));
        let bad = r#"{"token":"crs_x","expiresAt":"2022-02-01T00:00:00Z","updatedAt":"yesterday"}"#;
        let e = serde_json::from_str::<AccessToken>(bad).unwrap_err().to_string();
        assert!(e.contains("`yesterday` is not an RFC 3339 date-time"), "{e}");
        for wrong in [
            r#"{"token":"crs_x","expiresAt":7}"#,
            r#"{"token":"crs_x","expiresAt":"2022-02-01T00:00:00Z","permissions":{"a":1}}"#,
        ] {
            assert!(serde_json::from_str::<AccessToken>(wrong).is_err(), "{wrong}");
        }
    }

    #[test]
    fn installation_from_real_webhook_shape() {
        let json = r#"{"id":"88f89df1-0a53-41c5-974d-dd99708b2f9f","appId":"d23967cc-dd16-452b-8af4-869965745978",
          "appNameId":"climatetrade-connector","createdAt":"2024-03-26T08:47:15.356Z","updatedAt":"2024-03-26T08:47:15.356Z",
          "permissions":{"organization_info":"VIEW"},
          "organization":{"id":"o1","url":"u","zip":null,"city":"San José","logo":"l","type":"projectDeveloper",
             "website":null,"fullName":"Org","isPublic":true,"createdAt":"2024-03-26T08:47:15.356+00:00",
             "updatedAt":"2024-03-26T08:47:15Z","countryCode":"CR","physicalAddress":null,"registrationNumber":"1",
             "organizationIndustries":null},
          "accessTokensUrl":"https://api.carbonregistry.com/app/installations/88f89df1-0a53-41c5-974d-dd99708b2f9f/accessTokens"}"#;
        let i: Installation = serde_json::from_str(json).unwrap();
        let org = i.organization.unwrap();
        assert_eq!(org.display_name(), "Org");
        assert_eq!(org.kind.as_deref(), Some("projectDeveloper"));
        assert_eq!(org.extra["city"], "San José");
        let bare: Installation = serde_json::from_str(r#"{"id":"x","permissions":null}"#).unwrap();
        assert!(bare.permissions.is_empty());
    }

    #[test]
    fn page_stop_rules() {
        let inst = |n: usize| {
            (0..n)
                .map(|i| Installation {
                    id: i.to_string(),
                    app_id: None,
                    app_name_id: None,
                    created_at: None,
                    updated_at: None,
                    permissions: Permissions::new(),
                    organization: None,
                    access_tokens_url: None,
                    extra: BTreeMap::new(),
                })
                .collect::<Vec<_>>()
        };
        let page: InstallationsPage = serde_json::from_str(
            r#"{"pagination":{"total":25,"currentPage":1,"pageCount":3,"nextPage":2,"prevPage":0},"installations":[]}"#,
        )
        .unwrap();
        assert!(!page.has_more(10, 0), "empty page ends the list");
        let full = InstallationsPage {
            installations: inst(10),
            ..page.clone()
        };
        assert!(full.has_more(10, 10));
        assert!(!full.has_more(10, 25), "total reached");
        assert!(
            !InstallationsPage {
                installations: inst(5),
                ..page.clone()
            }
            .has_more(10, 25)
        );
        let last: InstallationsPage =
            serde_json::from_str(r#"{"pagination":{"nextPage":null},"installations":[]}"#).unwrap();
        assert!(
            !InstallationsPage {
                installations: inst(10),
                ..last
            }
            .has_more(10, 10)
        );
        let no_pagination = InstallationsPage {
            pagination: None,
            installations: inst(10),
        };
        assert!(no_pagination.has_more(10, 10));
    }
}
