//! `icr-app demo`: the whole flow against an embedded fake registry, narrated step by step.
//!
//! It prints no secret: tokens and JWTs are shown by their claims, lengths and expiry only.

use std::time::Instant;

use http::Method;
use icr_app_core::webhook::{self, WebhookSecret};
use icr_app_core::{App, AppKey, InstallationId, OrganizationId, TokenScope};
use icr_app_testkit::FakeRegistry;
use icr_app_ureq::{Client, UreqTransport};

use crate::Failure;
use crate::out::outln;

/// Prints one step: its number, what it did, the result, and how long it took.
struct Narrator {
    step: u32,
}

impl Narrator {
    fn step<T>(&mut self, what: &str, f: impl FnOnce() -> Result<(T, String), String>) -> Result<T, Failure> {
        self.step += 1;
        let started = Instant::now();
        let (value, result) = f().map_err(|e| Failure::Other(format!("step {} ({what}) failed: {e}", self.step)))?;
        let took = started.elapsed();
        outln!("{:>2}. {what} [{:.1} ms]", self.step, took.as_secs_f64() * 1000.0)?;
        for line in result.lines() {
            outln!("      {line}")?;
        }
        Ok(value)
    }
}

pub(crate) fn run() -> Result<(), Failure> {
    let started = Instant::now();
    let mut n = Narrator { step: 0 };
    outln!("icr-app demo: an ICR app's whole flow against an embedded fake registry\n")?;

    let demo = n.step("start the fake ICR registry on loopback", || {
        let demo = FakeRegistry::demo();
        let text = format!(
            "{} with app {} and {} installations",
            demo.registry.base_url(),
            demo.app_id,
            demo.installation_ids.len()
        );
        Ok((demo, text))
    })?;

    let key = n.step("load the app's RSA private key", || {
        let key = AppKey::from_pem(demo.private_key_pem).map_err(|e| e.to_string())?;
        let text = format!(
            "{}-bit RSA, SHA-256 fingerprint {}",
            key.modulus_bits(),
            key.fingerprint()
        );
        Ok((key, text))
    })?;

    // With -v, each request is shown through the `tracing` events the client emits.
    let transport = UreqTransport::new();
    let app = App::builder(demo.app_id.clone(), key)
        .base_url(demo.registry.base_url())
        .build()
        .map_err(Failure::Sdk)?;
    let client = Client::with_transport(app, transport);

    n.step("sign the app JWT (RS256)", || {
        let jwt = client.jwt().map_err(|e| e.to_string())?;
        let text = format!(
            "iss={} iat={} (60 s back, for clock drift) exp={} (9 min ahead; the registry allows at most 10)\n{} characters, not shown",
            demo.app_id,
            jwt.issued_at(),
            jwt.expires_at(),
            jwt.token().expose().len()
        );
        Ok(((), text))
    })?;

    let installations = n.step("list installations (GET /app/installations, every page)", || {
        let all = client.installations().map_err(|e| e.to_string())?;
        let text = all.iter().map(crate::installation_line).collect::<Vec<_>>().join("\n");
        Ok((all, text))
    })?;
    // What a scheduled job knows is the organization it works for: its installation's id
    // changes when the organization reinstalls the app, so the demo finds it by organization.
    let org_id = installations
        .first()
        .and_then(|i| i.organization.as_ref())
        .map(|o| o.id.clone())
        .ok_or_else(|| Failure::Other("the demo registry has no installation with an organization".into()))?;
    let org = OrganizationId::new(org_id.clone()).map_err(Failure::Sdk)?;

    let id = n.step(
        &format!("find the installation of organization {org_id}: GET /app/organizations/{org_id}/installation"),
        || {
            let found = client.installation_for_organization(&org).map_err(|e| e.to_string())?;
            let id = InstallationId::new(found.id.clone()).map_err(|e| e.to_string())?;
            let text = format!(
                "-> installation {id} (remembered: later calls by organization need no lookup)
{}",
                crate::installation_line(&found)
            );
            Ok((id, text))
        },
    )?;

    let token = n.step(
        "mint an installation access token by organization (POST /app/installations/{id}/accessTokens)",
        || {
            let t = client.organization_token(&org).map_err(|e| e.to_string())?;
            let a = t.access_token();
            let text = format!(
                "crs_… ({} characters, not shown), expires {}, permissions {}
for installation {id}, found above: no second lookup ({} in all)",
                t.secret().expose().len(),
                a.expires_at,
                crate::permissions_text(&a.permissions),
                demo.registry.lookup_count(&org_id)
            );
            Ok((t, text))
        },
    )?;

    n.step("ask again, by installation id: served from the cache", || {
        let again = client.installation_token(&id).map_err(|e| e.to_string())?;
        if !again.same_as(&token) {
            return Err("the cache minted a second token".into());
        }
        let mints = demo.registry.mint_count(id.as_str());
        Ok((
            (),
            format!("same token, registry mints so far for this installation: {mints}"),
        ))
    })?;

    n.step("GET /projects with the installation token", || {
        let v: serde_json::Value = client
            .get_json(&id, "/projects?limit=10&page=0")
            .map_err(|e| e.to_string())?;
        let count = v["projects"].as_array().map_or(0, Vec::len);
        Ok(((), format!("{count} projects")))
    })?;

    n.step("GET /organizations/{id} with the installation token", || {
        let v: serde_json::Value = client
            .get_json(&id, &format!("/organizations/{org_id}"))
            .map_err(|e| e.to_string())?;
        Ok((
            (),
            format!(
                "{} ({})",
                v["fullName"].as_str().unwrap_or("?"),
                v["id"].as_str().unwrap_or("?")
            ),
        ))
    })?;

    n.step("verify a signed webhook delivery (x-icr-signature-256)", || {
        let secret = WebhookSecret::new(demo.webhook_secret.clone()).map_err(|e| e.to_string())?;
        let (body, signature) = demo
            .registry
            .webhook_delivery(secret.expose(), "installed", id.as_str());
        let event = webhook::verify(&secret, Some(&signature), &body).map_err(|e| e.to_string())?;
        // Flip one character of the signed payload, as a forger editing the event would.
        let mut tampered = body.clone();
        let marker = b"\"signedData\":\"";
        let at = tampered
            .windows(marker.len())
            .position(|w| w == marker)
            .ok_or("the delivery has no signedData")?;
        let b = &mut tampered[at + marker.len() + 8];
        *b = if *b == b'A' { b'B' } else { b'A' };
        let refused = match webhook::verify(&secret, Some(&signature), &tampered) {
            Err(e) => e.to_string(),
            Ok(_) => return Err("a tampered delivery was accepted".into()),
        };
        let text = format!(
            "accepted: {} event for installation {}\na tampered copy is refused: {refused}",
            event.event,
            event.installation_id().unwrap_or("?")
        );
        Ok(((), text))
    })?;

    n.step("revoke the token (DELETE /app/installations/token)", || {
        client.revoke(token.secret()).map_err(|e| e.to_string())?;
        Ok(((), "revoked".to_owned()))
    })?;

    n.step("use the revoked token: the registry refuses it", || {
        let mut request = client
            .request(Method::GET, "/projects", None)
            .map_err(|e| e.to_string())?;
        icr_app_core::api::authorize(&mut request, token.secret()).map_err(|e| e.to_string())?;
        let response = client.transport().send(request).map_err(|e| e.to_string())?;
        if response.status() != 401 {
            return Err(format!("expected 401, got {}", response.status()));
        }
        let fresh = client
            .token(&TokenScope::Installation(id.clone()), None)
            .map_err(|e| e.to_string())?;
        let text = format!(
            "401 Unauthorized, as expected; the client mints a fresh token on demand ({} mints in all)",
            demo.registry.mint_count(id.as_str())
        );
        drop(fresh);
        Ok(((), text))
    })?;

    outln!("\ndone in {:.0} ms", started.elapsed().as_secs_f64() * 1000.0)?;
    Ok(())
}
