//! The bridge socket's codec (src/protocol/ipc.rs): a request line as the
//! daemon reads it (`RequestLine`, then `Request::parse` of its op and
//! args), and an answer line as the bridge reads it (`Response`).
//!
//! Beyond "never panics": whatever parses survives serialize → parse
//! unchanged, for the line and for the typed request (the bridge sends
//! `Request::op()`/`args()`, the daemon parses them back).
#![no_main]

use cloudagent_daemon::protocol::ipc::{Request, RequestLine, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(line) = serde_json::from_slice::<RequestLine>(data) {
        check_request(line);
    }
    if let Ok(resp) = serde_json::from_slice::<Response>(data) {
        let text = serde_json::to_vec(&resp).expect("a response encodes");
        let again: Response = serde_json::from_slice(&text).expect("an encoded response parses");
        assert_eq!(again.request_id, resp.request_id);
        assert_eq!(again.result, resp.result);
        assert_eq!(again.error, resp.error);
    }
});

fn check_request(line: RequestLine) {
    let text = serde_json::to_vec(&line).expect("a request line encodes");
    let again: RequestLine = serde_json::from_slice(&text).expect("an encoded line parses");
    assert_eq!(
        (&again.request_id, &again.op, &again.args),
        (&line.request_id, &line.op, &line.args)
    );
    match Request::parse(&line.op, line.args) {
        Ok(req) => {
            // As the bridge sends it, through the wire format.
            let sent = RequestLine {
                request_id: line.request_id,
                op: req.op().to_string(),
                args: req.args(),
            };
            let text = serde_json::to_vec(&sent).expect("a request encodes");
            let got: RequestLine = serde_json::from_slice(&text).expect("it parses");
            assert_eq!(Request::parse(&got.op, got.args), Ok(req));
        }
        Err(e) => {
            assert!(
                matches!(e.code.as_str(), "BAD_ARGS" | "UNKNOWN_OP"),
                "{e:?}"
            );
            assert!(!e.message.is_empty());
        }
    }
}
