//! The store page (SPEC section 6) in a real headless browser against a live 3-node cluster:
//! chromium driven through chromedriver (WebDriver) by fantoccini. The page is loaded from a
//! follower, set up with a `store` token, and used as an associate would: search by prefix,
//! read the availability here / nearby / in the network and compare it with the ledger's,
//! see the pickup due, read a refusal's message, place a hold and find it in the ledger.
//!
//! Skipped with a message when chromium or chromedriver is missing, unless
//! `STOCKD_REQUIRE_BROWSER=1` (CI sets it: `.ci/run` installs both).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use testkit::Cluster;

/// How long the page gets to show something before the test gives up (a bound on waiting,
/// never a measured duration).
const WAIT: Duration = Duration::from_secs(30);

/// The first of `names` found on `PATH`.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// chromedriver on a free loopback port, in its own process group with the browsers it
/// starts: dropping it kills the whole group (also when the test fails) and removes the
/// browser's profile directory.
struct Driver {
    child: Child,
    port: u16,
    profile: PathBuf,
}

impl Driver {
    fn start(chromedriver: &PathBuf) -> Driver {
        use std::os::unix::process::CommandExt;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let profile =
            std::env::temp_dir().join(format!("stockd-browser-{}-{port}", std::process::id()));
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        Driver {
            child,
            port,
            profile,
        }
    }

    /// A WebDriver session with headless chromium (no sandbox: tests may run as root).
    async fn session(&self, chromium: &PathBuf) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            format!("--user-data-dir={}", self.profile.display()),
        ];
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": chromium, "args": args}),
        );
        let url = format!("http://127.0.0.1:{}", self.port);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            // chromedriver takes a moment to listen: retry until it does.
            match ClientBuilder::new(connector.clone())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => return client,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    panic!("no WebDriver session from chromedriver: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// The admin's HTTP calls that set the scene and read the ledger.
struct Api {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Api {
    async fn call(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("the node answers");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    #[track_caller]
    fn post(&self, path: &str, body: Value) -> impl std::future::Future<Output = Value> + '_ {
        let key = format!("{:032x}", client::new_request_id().0);
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("Idempotency-Key", key)
            .json(&body);
        let path = path.to_owned();
        async move {
            let (status, body) = self.call(request).await;
            assert_eq!(status, 200, "POST {path}: {body:#}");
            body
        }
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self
            .call(self.client.get(format!("{}{path}", self.base)))
            .await;
        assert_eq!(status, 200, "GET {path}: {body:#}");
        body
    }
}

/// Stores, stock, a web hold and a pickup order at `store-1`.
async fn scene(api: &Api) {
    let store = |id: &str, lat_e6: i32, lon_e6: i32| {
        json!({"location": id, "kind": "store", "pickup": true,
               "coordinates": {"lat_e6": lat_e6, "lon_e6": lon_e6}})
    };
    api.post("/v1/locations", store("store-1", 48_856_600, 2_352_200))
        .await;
    api.post("/v1/locations", store("store-2", 48_870_000, 2_330_000))
        .await;
    api.post(
        "/v1/locations",
        json!({"location": "w1", "kind": "warehouse"}),
    )
    .await;
    for (sku, location, qty) in [
        ("TSHIRT-M", "store-1", 10),
        ("TSHIRT-M", "store-2", 4),
        ("TSHIRT-M", "w1", 100),
        ("TSHIRT-L", "store-1", 3),
        ("SHOE-40", "store-1", 5),
    ] {
        let count = json!({"sku": sku, "location": location, "qty": qty, "reason": "count"});
        api.post("/v1/stock/counts", count).await;
    }
    let safety = json!({"sku": "TSHIRT-M", "location": "store-1", "qty": 1});
    api.post("/v1/stock/safety", safety).await;
    let line = json!([{"sku": "TSHIRT-M", "location": "store-1", "qty": 2}]);
    let hold =
        json!({"reservation": "web-hold", "channel": "web", "lines": line, "ttl_ms": 3_600_000});
    api.post("/v1/reservations", hold).await;
    let line = json!([{"sku": "TSHIRT-M", "location": "store-1", "qty": 1}]);
    let order = json!({"order": "pickup-1", "channel": "web", "lines": line,
                       "fulfilment": {"kind": "pickup", "window_ms": 86_400_000}});
    api.post("/v1/orders", order).await;
}

/// A `store` token for `store-1`, issued through the QUIC client as `stockctl token create`.
async fn store_token(cluster: &Cluster) -> String {
    let token = pki::Token::generate().expect("token");
    let grant = engine::TokenGrant {
        name: "tablet-store-1".to_owned(),
        role: "store".to_owned(),
        channels: Vec::new(),
        locations: vec!["store-1".to_owned()],
        expires_at_ms: cluster.clock().now_ms() + 86_400_000,
        secret_hash: token.secret_hash(),
    };
    let command = engine::Command::CreateToken(engine::TokenDef {
        id: token.id.clone(),
        grant,
    });
    let client = cluster.client().await.expect("client");
    let written = client.write(command).await.expect("written");
    assert!(written.outcome.is_ok(), "{:?}", written.outcome);
    token.text()
}

/// Waits until the element at `css` shows a text for which `ok` holds; that text.
async fn text_until(c: &Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut seen = String::new();
    loop {
        if let Ok(element) = c.find(Locator::Css(css)).await {
            seen = element.text().await.unwrap_or_default();
            if ok(&seen) {
                return seen;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{css} never showed the expected text; last: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text_is(c: &Client, css: &str, expected: &str) {
    text_until(c, css, |t| t == expected).await;
}

async fn type_into(c: &Client, css: &str, text: &str) {
    let input = c.find(Locator::Css(css)).await.expect(css);
    input.clear().await.expect("clear");
    input.send_keys(text).await.expect("type");
}

async fn click(c: &Client, css: &str) {
    let element = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .expect(css);
    element.click().await.expect("click");
}

/// The ledger's balance and ATS of `sku` at `at` for `channel`, as the API answers.
async fn availability(api: &Api, sku: &str, at: &str, channel: &str) -> Value {
    let path = format!("/v1/availability?sku={sku}&at={at}&channel={channel}");
    api.get(&path).await["skus"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_associate_finds_stock_sees_pickups_and_holds_in_a_real_browser() {
    let (Some(chromedriver), Some(chromium)) = (
        on_path(&["chromedriver"]),
        on_path(&["chromium", "chromium-browser", "google-chrome"]),
    ) else {
        assert!(
            std::env::var("STOCKD_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "STOCKD_REQUIRE_BROWSER=1 but chromium or chromedriver is not installed"
        );
        eprintln!("skipped: chromium and chromedriver are not installed (apt-get install chromium chromium-driver)");
        return;
    };
    let cluster = Cluster::replicated(3).await.expect("cluster");
    let admin = Api {
        base: cluster.http_url(2),
        token: cluster.admin_token().expect("admin token"),
        client: reqwest::Client::new(),
    };
    // The admin token reaches the ledger once a leader proposed it.
    let deadline = tokio::time::Instant::now() + WAIT;
    while admin
        .call(admin.client.get(format!("{}/v1/changes", admin.base)))
        .await
        .0
        != 200
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the admin token never worked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    scene(&admin).await;
    let token = store_token(&cluster).await;

    let driver = Driver::start(&chromedriver);
    let c = driver.session(&chromium).await;
    let outcome = use_the_page(&c, &admin, &token).await;
    let _ = c.close().await;
    drop(driver);
    cluster.shutdown().await;
    outcome
}

/// Everything the associate does, in order.
async fn use_the_page(c: &Client, api: &Api, token: &str) {
    // The page and its files are open and carry the policy; the API is not.
    let page = reqwest::get(format!("{}/", api.base)).await.expect("page");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("a text header")
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let open = reqwest::get(format!("{}/v1/skus?prefix=T", api.base))
        .await
        .expect("api");
    assert_eq!(open.status(), 401);

    c.goto(&format!("{}/", api.base)).await.expect("goto");
    type_into(c, "#store-input", "store-1").await;
    type_into(c, "#token-input", token).await;
    click(c, "#setup-submit").await;
    text_until(c, "#store-name", |t| t.contains("store-1")).await;

    // A pickup due here, with its deadline.
    let order = api.get("/v1/orders/pickup-1").await;
    let deadline_ms = order["pickup_deadline"]["ms"]
        .as_u64()
        .expect("a pickup deadline");
    text_is(c, "tr[data-order='pickup-1'] .pickup-order", "pickup-1").await;
    let pickups = api.get("/v1/locations/store-1/pickups").await;
    assert_eq!(
        pickups["pickups"][0]["deadline"]["ms"].as_u64(),
        Some(deadline_ms)
    );
    let shown_deadline = c
        .execute(
            "return document.querySelector(\"tr[data-order='pickup-1'] td\").title",
            vec![],
        )
        .await
        .expect("deadline cell");
    assert_eq!(shown_deadline, pickups["pickups"][0]["deadline"]["rfc3339"]);
    text_until(c, "tr[data-order='pickup-1']", |t| {
        t.contains("TSHIRT-M × 1")
    })
    .await;

    // A malformed prefix: the problem's words, not a blank page.
    type_into(c, "#search-input", "T SHIRT").await;
    click(c, "#search-submit").await;
    text_until(c, "#error", |t| {
        t.contains("bad sku id") && t.contains("(invalid)")
    })
    .await;

    find_a_sku(c, api).await;
    hold_for_a_customer(c, api).await;
}

/// Search by prefix, open a SKU: the numbers here, nearby and in the network are the ledger's.
async fn find_a_sku(c: &Client, api: &Api) {
    type_into(c, "#search-input", "TSHIRT").await;
    click(c, "#search-submit").await;
    text_is(c, "button[data-sku='TSHIRT-L']", "TSHIRT-L").await;
    click(c, "button[data-sku='TSHIRT-M']").await;
    let here = availability(api, "TSHIRT-M", "store-1", "pos").await;
    let balance = &here["rows"][0]["balance"];
    text_is(
        c,
        "#here-on-hand",
        balance["on_hand"]["display"]
            .as_str()
            .expect("a display string"),
    )
    .await;
    assert_eq!(balance["on_hand"]["units"], 10);
    text_is(c, "#here-reserved", "2").await;
    assert_eq!(balance["reserved"]["units"], 2);
    text_is(c, "#here-allocated", "1").await;
    text_is(
        c,
        "#here-ats",
        here["rows"][0]["ats_pos"]["display"]
            .as_str()
            .expect("a display string"),
    )
    .await;
    assert_eq!(here["rows"][0]["ats_pos"]["units"], 7);
    let network = availability(api, "TSHIRT-M", "all", "web").await;
    text_is(
        c,
        "#network-ats",
        network["ats"]["display"]
            .as_str()
            .expect("a display string"),
    )
    .await;
    assert_eq!(network["ats"]["units"], 110);
    let nearby = text_until(c, "tr[data-location='store-2']", |t| !t.is_empty()).await;
    assert!(nearby.contains("km"), "{nearby}");
    text_is(c, "tr[data-location='store-2'] .nearby-ats", "4").await;
}

/// A hold the shelf cannot serve shows the refusal's facts; one it can is in the ledger.
async fn hold_for_a_customer(c: &Client, api: &Api) {
    type_into(c, "#hold-qty", "50").await;
    click(c, "#hold-submit").await;
    text_until(c, "#error", |t| t.contains("insufficient_stock")).await;

    // A hold for a customer who will come in: in the ledger, on channel pos, here.
    type_into(c, "#hold-qty", "2").await;
    click(c, "#hold-submit").await;
    text_until(c, "#hold-result", |t| t.starts_with("Held 2 × TSHIRT-M")).await;
    let id = c
        .execute(
            "return document.getElementById('hold-result').dataset.reservation",
            vec![],
        )
        .await
        .expect("reservation id");
    let id = id.as_str().expect("a reservation id").to_owned();
    let hold = api.get(&format!("/v1/reservations/{id}")).await;
    assert_eq!(hold["state"], "active", "{hold:#}");
    assert_eq!(hold["channel"], "pos");
    assert_eq!(hold["lines"][0]["location"], "store-1");
    assert_eq!(hold["lines"][0]["sku"], "TSHIRT-M");
    assert_eq!(hold["lines"][0]["qty"]["units"], 2);
    let after = availability(api, "TSHIRT-M", "store-1", "pos").await;
    assert_eq!(after["rows"][0]["balance"]["reserved"]["units"], 4);
    text_is(c, "#here-reserved", "4").await;
    text_is(c, "#here-ats", "5").await;
    assert!(
        !c.find(Locator::Css("#error"))
            .await
            .expect("the error box")
            .is_displayed()
            .await
            .expect("its visibility"),
        "no error left after the hold"
    );
}
