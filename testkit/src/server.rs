//! The HTTP/1.1 server: one tokio runtime on its own thread, one task per connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::sync::{Notify, oneshot};

use crate::api::{self, Reply};
use crate::state::{Fault, RecordedRequest, State};

/// Request bodies larger than this are refused with 413.
const MAX_REQUEST_BODY: usize = 1024 * 1024;

/// Stops the server thread when dropped.
pub(crate) struct Handle {
    pub(crate) addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(crate) fn spawn(listener: std::net::TcpListener, state: Arc<Mutex<State>>) -> std::io::Result<Handle> {
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (tx, mut rx) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(format!("fake-icr-{}", addr.port()))
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                loop {
                    tokio::select! {
                        _ = &mut rx => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            tokio::spawn(connection(stream, state.clone()));
                        }
                    }
                }
            });
        })?;
    Ok(Handle {
        addr,
        shutdown: Some(tx),
        thread: Some(thread),
    })
}

/// Serves one connection until the client closes it or a fault drops it.
async fn connection(stream: tokio::net::TcpStream, state: Arc<Mutex<State>>) {
    let kill = Arc::new(Notify::new());
    let service = {
        let kill = kill.clone();
        service_fn(move |req| serve(req, state.clone(), kill.clone()))
    };
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        _ = kill.notified() => {} // dropping the connection closes the socket unanswered
    }
}

async fn serve(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    kill: Arc<Notify>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => return Ok(respond(&state, None, api::error(413, "Request body too large"))),
    };
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    // The path under the base path (see `FakeRegistry::serve_under`); `None` when outside it.
    let base_path = state.lock().unwrap_or_else(PoisonError::into_inner).base_path.clone();
    let routed = match parts.uri.path().strip_prefix(base_path.as_str()) {
        Some("") => Some("/".to_owned()),
        Some(rest) if rest.starts_with('/') => Some(rest.to_owned()),
        _ => None,
    };
    let path = routed.clone().unwrap_or_else(|| parts.uri.path().to_owned());
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or(path.clone(), |p| p.as_str().to_owned());
    let (index, fault) = {
        let mut s = state.lock().unwrap_or_else(PoisonError::into_inner);
        let at = s.now_system();
        s.requests.push(RecordedRequest {
            method: parts.method.as_str().to_owned(),
            path: path_and_query.clone(),
            headers: headers.clone(),
            body: body.clone(),
            at,
            status: 0,
        });
        (s.requests_taken + s.requests.len() - 1, s.draw_fault(&path))
    };
    let fault = match fault {
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            None
        }
        other => other,
    };
    let reply = match fault {
        Some(Fault::DropConnection) => {
            kill.notify_one();
            return std::future::pending().await;
        }
        Some(Fault::Status { status, retry_after }) => {
            let mut r = api::error(status, "Injected failure");
            if let Some(secs) = retry_after {
                r.headers.push(("retry-after", secs.to_string()));
            }
            r
        }
        Some(Fault::MalformedBody) => {
            return Ok(respond_raw(
                &state,
                Some(index),
                200,
                Vec::new(),
                b"{\"unexpected\": true".to_vec(),
            ));
        }
        Some(Fault::Redirect { location, status }) => {
            return Ok(respond_raw(
                &state,
                Some(index),
                status,
                vec![("location", location)],
                Vec::new(),
            ));
        }
        Some(Fault::Delay(_)) | None if routed.is_none() => api::error(404, format!("Cannot {} {path}", parts.method)),
        Some(Fault::Delay(_)) | None => answer(&state, &parts.method, &path, &parts.uri, &headers, &body),
    };
    Ok(respond(&state, Some(index), reply))
}

fn answer(
    state: &Arc<Mutex<State>>,
    method: &hyper::Method,
    path: &str,
    uri: &hyper::Uri,
    headers: &[(String, String)],
    body: &[u8],
) -> Reply {
    let mut s = state.lock().unwrap_or_else(PoisonError::into_inner);
    let req = api::Request {
        method: method.as_str(),
        path,
        query: uri.query().unwrap_or(""),
        headers,
        body,
    };
    api::handle(&mut s, &req)
}

fn respond(state: &Arc<Mutex<State>>, index: Option<usize>, reply: Reply) -> Response<Full<Bytes>> {
    let body = reply.body.to_string().into_bytes();
    respond_raw(state, index, reply.status, reply.headers, body)
}

fn respond_raw(
    state: &Arc<Mutex<State>>,
    index: Option<usize>,
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
) -> Response<Full<Bytes>> {
    let date = {
        let mut s = state.lock().unwrap_or_else(PoisonError::into_inner);
        // `index` counts every request ever recorded; the log may have been drained since.
        let taken = s.requests_taken;
        if let Some(r) = index
            .and_then(|i| i.checked_sub(taken))
            .and_then(|i| s.requests.get_mut(i))
        {
            r.status = status;
        }
        httpdate::fmt_http_date(s.now_system())
    };
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .header("date", date);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}
