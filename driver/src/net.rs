//! The network settings every driver applies the same way: the proxy of each URL (decided by
//! the core's [`Proxies`] from the environment's values, read here) and extra trusted CA
//! certificates from a PEM file.

use std::path::{Path, PathBuf};

use icr_app_core::{Error, PROXY_VARIABLES, Proxies, ProxyUrl, TransportErrorKind};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

/// The proxy setting of a client: the environment's (the default), one given explicitly, or
/// none. Its `Debug` never shows proxy credentials.
#[derive(Clone, Debug, Default)]
pub enum ProxySetting {
    /// `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (either case, the lowercase name
    /// first), as [`Proxies::from_lookup`] reads them.
    #[default]
    Environment,
    /// This proxy for every URL but loopback hosts and those `NO_PROXY` names.
    Url(ProxyUrl),
    /// No proxy at all, whatever the environment says.
    Disabled,
}

impl ProxySetting {
    /// An explicit proxy (`http://[user:password@]host:port`); see [`ProxyUrl::parse`].
    pub fn url(url: &str) -> Result<Self, Error> {
        ProxyUrl::parse(url).map(Self::Url)
    }

    /// The proxies this setting gives, reading the environment's variables now.
    pub fn proxies(&self) -> Result<Proxies, Error> {
        self.proxies_with(|name| std::env::var(name).ok())
    }

    /// [`proxies`](Self::proxies) with the environment's values from `var`.
    pub fn proxies_with(&self, var: impl FnMut(&str) -> Option<String>) -> Result<Proxies, Error> {
        match self {
            Self::Environment => Proxies::from_lookup(var),
            Self::Url(proxy) => {
                // Only `no_proxy`/`NO_PROXY` of the environment apply to an explicit proxy.
                let mut var = var;
                let no_proxy = Proxies::from_lookup(|name| {
                    if name.eq_ignore_ascii_case("no_proxy") {
                        var(name)
                    } else {
                        None
                    }
                })?;
                Ok(no_proxy.with_explicit(proxy.clone()))
            }
            Self::Disabled => Ok(Proxies::disabled()),
        }
    }
}

/// The names of the environment variables [`ProxySetting::Environment`] reads.
pub const PROXY_ENV: [&str; 8] = PROXY_VARIABLES;

/// The variable naming a PEM file of CA certificates trusted on top of the built-in roots, as
/// OpenSSL, curl and Python honour it.
pub const SSL_CERT_FILE: &str = "SSL_CERT_FILE";

/// The CA certificates of the PEM file at `path`, to trust on top of the built-in roots.
/// `setting` names where the path came from (`ca_file`, `--ca-file`, `SSL_CERT_FILE`) in
/// errors. A file that cannot be read, or holds no certificate, is an error naming it and the fix.
pub fn load_ca_file(path: &Path, setting: &'static str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| {
        Error::config(
            setting,
            format!(
                "cannot read the CA file {shown}: {e}; give the path of a PEM file of CA certificates (-----BEGIN CERTIFICATE-----) that this process can read"
            ),
        )
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::config(
                setting,
                format!("the CA file {shown} is not valid PEM ({e}); give a PEM file of CA certificates (-----BEGIN CERTIFICATE-----)"),
            )
        })?;
    if certs.is_empty() {
        return Err(Error::config(
            setting,
            format!(
                "the CA file {shown} holds no certificate; give a PEM file of CA certificates (-----BEGIN CERTIFICATE----- blocks), not a key or a DER file"
            ),
        ));
    }
    Ok(certs)
}

/// The extra trusted CA certificates of a client: those of `ca_file` (the explicit setting),
/// then those of the file `SSL_CERT_FILE` names, if set.
pub fn extra_roots(ca_file: Option<&Path>) -> Result<Vec<CertificateDer<'static>>, Error> {
    extra_roots_with(ca_file, std::env::var_os(SSL_CERT_FILE).map(PathBuf::from))
}

/// [`extra_roots`] with `SSL_CERT_FILE`'s value given.
pub fn extra_roots_with(
    ca_file: Option<&Path>,
    ssl_cert_file: Option<PathBuf>,
) -> Result<Vec<CertificateDer<'static>>, Error> {
    let mut roots = Vec::new();
    if let Some(path) = ca_file {
        roots.extend(load_ca_file(path, "ca_file")?);
    }
    if let Some(path) = ssl_cert_file.filter(|p| !p.as_os_str().is_empty()) {
        roots.extend(load_ca_file(&path, SSL_CERT_FILE)?);
    }
    Ok(roots)
}

/// `error` (of a request sent through `proxy`) naming the proxy, without its credentials, and
/// what to check when the proxy refused the tunnel (407: its credentials; 403: its rules).
pub fn through_proxy(error: Error, proxy: &ProxyUrl) -> Error {
    let Error::Transport { kind, message } = error else {
        return error;
    };
    let message = message.replace(proxy.expose_url(), &proxy.to_string());
    let hint = if message.contains("407") || message.contains("proxy authorization required") {
        "the proxy asks for credentials, or refused these: give them in the proxy URL (http://user:password@host:port)"
    } else if message.contains("403") || message.contains("tunnel error: unsuccessful") {
        "the proxy refused to open a tunnel to the registry (403 Forbidden or another refusal): ask its administrators to allow the registry's host and port"
    } else if message.contains("certificate") {
        // The tunnel was open: TLS with the registry (or an https:// proxy) failed.
        "the tunnel was open, but the TLS certificate was refused: if a private or corporate CA signed it, trust that CA (ca_file, --ca-file, ICR_CA_FILE or SSL_CERT_FILE)"
    } else if kind == TransportErrorKind::Connect {
        "check the proxy's host and port, and that it is running"
    } else {
        "check the proxy"
    };
    Error::Transport {
        kind,
        message: format!("{message} (through the proxy {proxy}: {hint})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_errors_name_the_file_and_the_fix() {
        let dir = std::env::temp_dir().join(format!("icr-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let e = load_ca_file(&missing, "ca_file").unwrap_err().to_string();
        assert!(e.contains("missing.pem") && e.contains("PEM file"), "{e}");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = load_ca_file(&empty, "ca_file").unwrap_err().to_string();
        assert!(e.contains("empty.pem") && e.contains("holds no certificate"), "{e}");
        let e = extra_roots_with(None, Some(missing)).unwrap_err().to_string();
        assert!(e.contains("SSL_CERT_FILE"), "{e}");
        assert!(extra_roots_with(None, Some(PathBuf::new())).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn proxy_errors_name_the_proxy_without_credentials() {
        let proxy = ProxyUrl::parse("http://me:s3cret@proxy.test:3128").unwrap();
        let e = Error::Transport {
            kind: TransportErrorKind::Connect,
            message: "failed: http://me:s3cret@proxy.test:3128 said 407".into(),
        };
        let text = through_proxy(e, &proxy).to_string();
        assert!(
            !text.contains("s3cret") && text.contains("http://proxy.test:3128") && text.contains("credentials"),
            "{text}"
        );
        let e = Error::Transport {
            kind: TransportErrorKind::Connect,
            message: "io: invalid peer certificate: UnknownIssuer".into(),
        };
        let text = through_proxy(e, &proxy).to_string();
        assert!(
            text.contains("SSL_CERT_FILE") && !text.contains("that it is running"),
            "{text}"
        );
        let setting = ProxySetting::url("http://me:s3cret@proxy.test:3128").unwrap();
        assert!(!format!("{setting:?}").contains("s3cret"));
        let proxies = setting
            .proxies_with(|n| (n == "NO_PROXY").then(|| "a.test".into()))
            .unwrap();
        assert!(proxies.proxy_for(&"https://a.test/".parse().unwrap()).is_none());
        assert!(proxies.proxy_for(&"https://b.test/".parse().unwrap()).is_some());
    }
}
