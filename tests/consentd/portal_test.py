#!/usr/bin/python3
"""The subscriber's privacy page in a real browser (docs/portal.md): headless
Chromium driven by Selenium, with JavaScript disabled, against real consentd
processes, and a data plane (optgate-replay --control) showing that what the
subscriber chose through the page is what the network enforces.

Environment (tests/consentd/meson.build): CONSENTD, OPTGATECTL,
CONSENTD_TEST_POLICY (config/policy.example.yaml), OPTGATE_REPLAY;
PORTAL_SCREENSHOTS=DIR saves the screenshots there (docs/images/ for the
docs) instead of the test's temporary directory.
"""
import base64
import datetime
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap, wrpcap
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon import Daemon  # noqa: E402

REPLAY = os.environ["OPTGATE_REPLAY"]
NOTICE = "2026-01"
IDENTIFIER = b"portal-test-uidh-0001"  # the X-UIDH value the data plane passes or strips
DEADLINE = 60  # seconds for anything event-driven; the suite also runs under ASan on a busy machine


def eventually(cond, what, timeout=DEADLINE):
    end = time.time() + timeout
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + (what() if callable(what) else what))


def portal_section(tmp, mode, extra=""):
    secret = os.path.join(tmp, f"link-{mode}.key")
    with open(secret, "w") as f:
        f.write(base64.b16encode(os.urandom(32)).decode() + "\n")
    return (f"portal:\n  mode: {mode}\n  listen: {{address: 127.0.0.1, port: 0}}\n"
            f"  link_secret_file: {secret}\n  notice_version: \"{NOTICE}\"\n" + extra)


class PortalDaemon(Daemon):
    """consentd with a portal section; `portal_port` is the page's port."""

    def __init__(self, section):
        # A small clock margin: each data plane run ends with a flush of its
        # disclosure counts that consentd acknowledges after margin + 1 s.
        super().__init__(limits=section + "disclosures: {clock_margin: 200ms}\n",
                         dataplanes="{socket: dp.sock, enforced_wait_timeout: 30s}")

    def start(self):
        super().start()
        pf = self.port_file + ".portal"
        eventually(lambda: os.path.exists(pf), "the portal's port file")
        with open(pf) as f:
            self.portal_port = int(f.read())

    def portal_url(self, path="/"):
        return f"http://127.0.0.1:{self.portal_port}{path}"

    def link(self, subscriber):
        st, _, j = self.request("POST", f"/v1/subscribers/{subscriber}/portal-links")
        assert st == 200, j
        return j

    def consents(self, subscriber):
        st, _, j = self.request("GET", f"/v1/subscribers/{subscriber}", token="auditor")
        return {c["purpose"]: c for c in j["consents"]} if st == 200 else {}

    def head(self):
        return self.metric("consentd_ledger_head_seq")

    def benefits(self):
        """Each purpose's benefit, as the policy states it."""
        st, _, j = self.request("GET", "/v1/purposes", token="auditor")
        assert st == 200, j
        return {p["name"]: p["benefit"] for p in j["purposes"]}


def browser(tmp, lang=None, headers=None, trust_any_certificate=False):
    """Headless Chromium, no JavaScript, a fresh profile, no network but loopback."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    if trust_any_certificate:  # the TLS test's self-signed certificate
        opts.add_argument("--ignore-certificate-errors")
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", "--window-size=1280,900",
              "--user-data-dir=" + tempfile.mkdtemp(prefix="chromium-", dir=tmp)):
        opts.add_argument(a)
    prefs = {"profile.managed_default_content_settings.javascript": 2}
    if lang:
        prefs["intl.accept_languages"] = lang
    opts.add_experimental_option("prefs", prefs)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    d.set_page_load_timeout(DEADLINE)
    if headers:
        d.execute_cdp_cmd("Network.enable", {})
        d.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": headers})
    return d


def screenshot(driver, path, width):
    """The whole page at `width` CSS pixels."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": 200, "deviceScaleFactor": 1, "mobile": width < 500})
    h = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]["height"]
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": int(h) + 1, "deviceScaleFactor": 1, "mobile": width < 500})
    png = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    with open(path, "wb") as f:
        f.write(base64.b64decode(png["data"]))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def section(driver, purpose):
    return driver.find_element(By.CSS_SELECTOR, f"section[aria-labelledby='purpose-{purpose}']")


def text_of(driver, css):
    """The element's text; "" while there is none, or while the page is
    being replaced (stale element, or Chrome's "Node with given id does not
    belong to the document", a plain WebDriverException)."""
    try:
        return driver.find_element(By.CSS_SELECTOR, css).text
    except WebDriverException:
        return ""


def wait_text(driver, css, text):
    """Waits until the element's text contains `text` (a click on a submit
    button returns before the next page has loaded), and returns it."""
    return eventually(lambda: text in text_of(driver, css) and text_of(driver, css),
                      lambda: f"'{text}' in {css} (now: {text_of(driver, css)!r})")


def write_capture(path, src):
    """One HTTP request from subscriber address `src` to example-adnet
    (advertising), carrying the identifier."""
    payload = (b"GET /ad HTTP/1.1\r\nHost: ads.example\r\nX-UIDH: " + IDENTIFIER + b"\r\n\r\n")
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    pkts = [eth / IP(src=src, dst="203.0.113.10") / TCP(sport=40000, dport=80, flags="S", seq=1000),
            eth / IP(src=src, dst="203.0.113.10") / TCP(sport=40000, dport=80, flags="PA", seq=1001, ack=1) /
            payload]
    for i, p in enumerate(pkts):
        p.time = 1700000000 + i * 0.001
    wrpcap(path, pkts)


def identifier_passed(d, capture, tmp, tag):
    """Replays the capture as a data plane of `d`; True if the identifier left intact."""
    out = os.path.join(tmp, f"{tag}.out.pcap")
    r = subprocess.run([REPLAY, "--quiet", "--control", os.path.join(d.dir, "dp.sock"), "--name", f"check-{tag}",
                        "--disclosure-interval", "1s", capture, out], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    data = b"".join(bytes(p) for p in rdpcap(out))
    assert b"X-UIDH: " in data, "the request did not come out"
    return IDENTIFIER in data


class SignedLinkTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="portal-test-")
        cls.shots = os.environ.get("PORTAL_SCREENSHOTS") or cls.tmp
        cls.d = PortalDaemon(portal_section(cls.tmp, "signed-link",
                                            "  rate_limits: {per_address: 1000, per_session: 1000}\n"))
        for address, sub in (("100.64.0.10", "sub-1001"), ("100.64.0.11", "sub-1002")):
            st, _, j = cls.d.request("PUT", f"/v1/bindings/{address}", {"subscriber": sub, "source": "radius"})
            assert st == 200, j
        cls.capture = os.path.join(cls.tmp, "request.pcap")
        write_capture(cls.capture, "100.64.0.10")
        cls.driver = browser(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        cls.driver.quit()
        alive = cls.d.alive()
        cls.d.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert alive, "consentd died during the tests"

    def open_link(self, driver, subscriber):
        url = self.d.link(subscriber)["url"]
        driver.delete_all_cookies()
        driver.get(url)
        # The link's page moves on to the privacy page by itself (no script).
        eventually(lambda: driver.current_url == self.d.portal_url("/"), "the privacy page after the link")
        return url

    def session_form(self, driver):
        """The browser's session cookie and the page's CSRF token."""
        cookie = driver.get_cookie("optgate_portal")
        csrf = driver.find_element(By.CSS_SELECTOR, "input[name=csrf]").get_attribute("value")
        return cookie, csrf

    def get(self, path, cookie=None):
        """GET on the portal with the browser's session cookie: status, headers, body."""
        c = http.client.HTTPConnection("127.0.0.1", self.d.portal_port, timeout=DEADLINE)
        c.request("GET", path, headers={"Cookie": f"optgate_portal={cookie['value']}"} if cookie else {})
        r = c.getresponse()
        body = r.read().decode()
        c.close()
        return r.status, r, body

    def post(self, path, fields, cookie=None):
        c = http.client.HTTPConnection("127.0.0.1", self.d.portal_port, timeout=DEADLINE)
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if cookie:
            headers["Cookie"] = f"optgate_portal={cookie['value']}"
        c.request("POST", path, body=urllib.parse.urlencode(fields), headers=headers)
        r = c.getresponse()
        body = r.read().decode()
        c.close()
        return r.status, body

    def test_1_opt_in_then_out_is_enforced_by_the_data_plane(self):
        d, drv = self.d, self.driver
        self.assertFalse(identifier_passed(d, self.capture, self.tmp, "before"), "passed before any consent")
        self.open_link(drv, "sub-1001")
        self.assertEqual(drv.find_element(By.TAG_NAME, "html").get_attribute("lang"), "en")
        self.assertIn("sub-1001", drv.find_element(By.TAG_NAME, "header").text)
        ads = section(drv, "advertising")
        self.assertIn("Example Ad Network Ltd.", ads.text)  # who receives it, with its description
        self.assertIn("90 days, then deleted", ads.text)
        benefit = d.benefits()["advertising"]
        self.assertTrue(benefit)
        self.assertIn("What you gain\n" + benefit, ads.text)  # the benefit, labelled, beside what it costs
        agree = ads.find_element(By.NAME, "agree")
        self.assertFalse(agree.is_selected(), "the 'I agree' box must start unticked")
        label = ads.find_element(By.CSS_SELECTOR, f"label[for='{agree.get_attribute('id')}']")
        self.assertIn("I agree", label.text)
        screenshot(drv, os.path.join(self.shots, "portal-desktop.png"), 1280)
        screenshot(drv, os.path.join(self.shots, "portal-mobile.png"), 390)

        # The button alone does not opt in: the box must be ticked.
        head = d.head()
        ads.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait_text(drv, ".flash", "tick “I agree” first")
        self.assertEqual(d.head(), head)
        self.assertNotIn("advertising", d.consents("sub-1001"))

        # A data plane connected through the change: it confirms, and the page says so.
        keeper_cap = os.path.join(self.tmp, "keeper.pcap")
        eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        k = [eth / IP(src="100.64.0.99", dst="198.51.100.1") / TCP(sport=1, dport=9) for _ in range(2)]
        k[0].time, k[1].time = 1700000000, 1700000000 + 3600  # paced: connected for an hour, or until stopped
        wrpcap(keeper_cap, k)
        keeper = subprocess.Popen([REPLAY, "--quiet", "--pace", "--control", os.path.join(d.dir, "dp.sock"),
                                   "--name", "keeper", keeper_cap, os.path.join(self.tmp, "keeper.out.pcap")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            eventually(lambda: any(x["name"] == "keeper" and x.get("synced", True)
                                   for x in d.request("GET", "/v1/dataplanes", token="auditor")[2]["dataplanes"]),
                       "the keeper data plane to connect")
            ads = section(drv, "advertising")
            ads.find_element(By.CSS_SELECTOR, f"label[for='{ads.find_element(By.NAME, 'agree').get_attribute('id')}']"
                             ).click()  # ticking through the label, as a keyboard or mouse user would
            self.assertTrue(section(drv, "advertising").find_element(By.NAME, "agree").is_selected())
            section(drv, "advertising").find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            wait_text(drv, ".flash", "“advertising” is on. In effect on the network now.")
        finally:
            keeper.send_signal(signal.SIGTERM)
            keeper.wait(timeout=DEADLINE)
        c = d.consents("sub-1001")["advertising"]
        self.assertEqual((c["source"], c["notice_version"], c["credential"]), ("portal", NOTICE, "portal-signed-link"))
        self.assertIn("On since", section(drv, "advertising").text)
        history = drv.find_element(By.CSS_SELECTOR, "section.history").text
        self.assertIn("turned on", history)
        screenshot(drv, os.path.join(self.shots, "portal-opted-in-desktop.png"), 1280)
        self.assertTrue(identifier_passed(d, self.capture, self.tmp, "granted"), "consent given, identifier stripped")

        # Opting out: one click. No data plane is connected now: recorded, not confirmed.
        section(drv, "advertising").find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait_text(drv, ".flash", "“advertising” is off. Recorded; the network has not confirmed yet.")
        self.assertNotIn("advertising", d.consents("sub-1001"))
        self.assertFalse(identifier_passed(d, self.capture, self.tmp, "revoked"), "consent withdrawn, identifier passed")

    def test_2_a_link_works_once(self):
        url = self.open_link(self.driver, "sub-1001")
        self.driver.delete_all_cookies()
        self.driver.get(url)
        self.assertEqual(self.driver.find_element(By.TAG_NAME, "h1").text, "This link was already used")
        self.driver.get(self.d.portal_url("/"))  # and no session came with it
        self.assertEqual(self.driver.find_element(By.TAG_NAME, "h1").text, "Your session has ended")
        self.driver.get(url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB"))
        self.assertEqual(self.driver.find_element(By.TAG_NAME, "h1").text, "This link is not valid")

    def test_3_forms_without_the_token_or_for_someone_else_change_nothing(self):
        self.open_link(self.driver, "sub-1001")
        cookie, csrf = self.session_form(self.driver)
        self.assertTrue(cookie["httpOnly"])
        self.assertEqual(cookie["sameSite"], "Strict")
        head = self.d.head()
        grant = {"purpose": "analytics", "action": "on", "agree": "yes"}
        for fields, cookie_sent in ((grant, cookie),                                  # no token
                                    (dict(grant, csrf="0" * 64), cookie),              # a wrong one
                                    (dict(grant, csrf=csrf), None),                    # no session
                                    (dict(grant, csrf=csrf, subscriber="sub-1002"), cookie),  # naming another
                                    (dict(grant, csrf=csrf, purpose="no-such-purpose"), cookie)):
            st, body = self.post("/choice", fields, cookie_sent)
            self.assertIn(st, (400, 403), (fields, body))
            self.assertIn("Nothing was changed", body)
        self.assertEqual(self.d.head(), head, "a refused form changed the ledger")
        self.assertEqual(self.d.consents("sub-1002"), {})
        self.assertEqual(self.d.consents("sub-1001"), {})
        # The same session's well-formed form does work (so the refusals above were for the reasons tested).
        st, _ = self.post("/choice", dict(grant, csrf=csrf), cookie)
        self.assertEqual(st, 303)
        self.assertIn("analytics", self.d.consents("sub-1001"))
        self.assertEqual(self.d.consents("sub-1002"), {})
        st, _ = self.post("/choice", {"csrf": csrf, "purpose": "analytics", "action": "off"}, cookie)
        self.assertEqual(st, 303)
        self.assertNotIn("analytics", self.d.consents("sub-1001"))

    def test_4_log_out_ends_the_session(self):
        self.open_link(self.driver, "sub-1002")
        self.driver.find_element(By.CSS_SELECTOR, "footer button").click()
        wait_text(self.driver, "h1", "You are logged out")
        self.driver.get(self.d.portal_url("/"))
        self.assertEqual(self.driver.find_element(By.TAG_NAME, "h1").text, "Your session has ended")

    def test_5_french(self):
        drv = browser(self.tmp, lang="fr-FR,fr")
        try:
            self.open_link(drv, "sub-1002")
            self.assertEqual(drv.find_element(By.TAG_NAME, "html").get_attribute("lang"), "fr")
            self.assertEqual(drv.find_element(By.TAG_NAME, "h1").text, "Vos choix de confidentialité")
            self.assertIn("J’accepte", section(drv, "advertising").text)
            self.assertIn("Ce que vous y gagnez\n" + self.d.benefits()["advertising"], section(drv, "advertising").text)
            screenshot(drv, os.path.join(self.shots, "portal-fr-mobile.png"), 390)
        finally:
            drv.quit()

    def test_6_no_script_anywhere(self):
        self.open_link(self.driver, "sub-1002")
        self.assertNotIn("<script", self.driver.page_source)
        c = http.client.HTTPConnection("127.0.0.1", self.d.portal_port, timeout=DEADLINE)
        c.request("GET", "/style.css")
        r = c.getresponse()
        r.read()
        self.assertEqual(r.status, 200)
        self.assertIn("default-src 'none'", r.getheader("Content-Security-Policy"))  # no script could run
        c.close()


    def test_7_each_choice_has_its_receipt_and_only_the_subscribers_own(self):
        d, drv = self.d, self.driver
        # Through the page: opt in to analytics, then out.
        self.open_link(drv, "sub-1001")
        an = section(drv, "analytics")
        agree_id = an.find_element(By.NAME, "agree").get_attribute("id")
        an.find_element(By.CSS_SELECTOR, f"label[for='{agree_id}']").click()
        section(drv, "analytics").find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait_text(drv, ".flash", "“analytics” is on.")
        section(drv, "analytics").find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait_text(drv, ".flash", "“analytics” is off.")
        st, _, sub = d.request("GET", "/v1/subscribers/sub-1001", token="auditor")
        self.assertEqual(st, 200)
        events = {e["seq"]: e for e in sub["history"]}
        # The history's rows, newest first: the revoke, then the grant, each with its receipt link.
        rows = drv.find_elements(By.CSS_SELECTOR, "section.history tbody tr")
        self.assertGreaterEqual(len(rows), 2)
        links = []
        for row, choice in zip(rows[:2], ("turned off", "turned on")):
            self.assertIn("analytics", row.text)
            self.assertIn(choice, row.text)
            a = row.find_element(By.CSS_SELECTOR, "a[download]")
            m = re.fullmatch(re.escape(d.portal_url("/receipts/")) + r"(\d+)", a.get_attribute("href"))
            self.assertTrue(m, a.get_attribute("href"))
            links.append(int(m.group(1)))
        self.assertEqual([events[s]["action"] for s in links], ["revoke", "grant"])
        # Every consent event of the page's history links its receipt.
        hrefs = [a.get_attribute("href") for a in drv.find_elements(By.CSS_SELECTOR, "section.history a[download]")]
        self.assertEqual(len(hrefs), len(rows))
        cookie, _ = self.session_form(drv)
        for seq in links:
            st, r, body = self.get(f"/receipts/{seq}", cookie)
            self.assertEqual(st, 200, body)
            self.assertEqual(r.getheader("Content-Type"), "application/json")
            self.assertEqual(r.getheader("Content-Disposition"), f'attachment; filename="receipt-{seq}.json"')
            st, _, api = d.request("GET", f"/v1/subscribers/sub-1001/receipts/{seq}", token="auditor")
            self.assertEqual(st, 200, api)
            self.assertEqual(json.loads(body), api)  # the API's receipt, from the same builder
            self.assertEqual(api["receipt_id"], events[seq]["hash"])
            self.assertEqual(api["ledger"]["seq"], seq)

        # Another subscriber's consent event: refused, nothing of theirs shown.
        st, _, j = d.request("PUT", "/v1/subscribers/sub-1002/consents/analytics",
                             {"source": "web", "notice_version": "secret-notice-7"})
        self.assertEqual(st, 200, j)
        theirs = j["seq"]
        self.assertEqual(d.request("GET", f"/v1/subscribers/sub-1002/receipts/{theirs}", token="auditor")[0], 200)
        bind = [s for s, e in events.items() if e["action"] == "bind"]
        for seq in [theirs, bind[0], 10 ** 9]:  # theirs, one of ours that is no choice, none at all
            st, _, body = self.get(f"/receipts/{seq}", cookie)
            self.assertEqual(st, 404, (seq, body))
            for leak in ("sub-1002", "secret-notice-7", "receipt_id"):
                self.assertNotIn(leak, body)
        drv.get(d.portal_url(f"/receipts/{theirs}"))
        self.assertEqual(drv.find_element(By.TAG_NAME, "h1").text, "Page not found")
        self.assertNotIn("sub-1002", drv.page_source)
        self.assertEqual(self.get(f"/receipts/{links[0]}")[0], 401)  # no session, no receipt
        st, _, j = d.request("DELETE", "/v1/subscribers/sub-1002/consents/analytics", {"source": "web"})
        self.assertEqual(st, 200, j)

    def test_8_what_was_shared_in_the_last_30_days_equals_the_api(self):
        d, drv = self.d, self.driver
        # A data plane strips the identifier now (no consent): with test 1's runs, some passed and some stripped.
        self.assertFalse(identifier_passed(d, self.capture, self.tmp, "shared"))
        st, _, j = d.request("GET", "/v1/subscribers/sub-1001/disclosures", token="auditor")
        self.assertEqual(st, 200, j)
        expected = {}
        for day in j["days"]:
            for col in day["collectors"]:
                for i in col["identifiers"]:
                    k = (col["name"], i["name"])
                    p, s_ = expected.get(k, (0, 0))
                    expected[k] = (p + i["passed"], s_ + i["stripped"])
        self.assertTrue(expected)
        self.assertGreater(sum(p for p, _ in expected.values()), 0)
        self.assertGreater(sum(s_ for _, s_ in expected.values()), 0)

        self.open_link(drv, "sub-1001")
        shared = drv.find_element(By.CSS_SELECTOR, "section.shared")
        self.assertIn("last 30 days", shared.find_element(By.TAG_NAME, "h2").text)
        chart = shared.find_element(By.CSS_SELECTOR, "svg.chart")
        self.assertEqual(chart.get_attribute("role"), "img")
        bars = chart.find_elements(By.CSS_SELECTOR, "rect")
        self.assertGreater(len(bars), 2)  # the legend's two, and bars
        shown = {}
        for row in shared.find_elements(By.CSS_SELECTOR, "tbody tr"):
            cells = row.find_elements(By.TAG_NAME, "td")
            name = cells[0].find_element(By.TAG_NAME, "strong").text
            shown[(name, cells[1].text)] = (int(cells[2].text), int(cells[3].text))
        self.assertEqual(shown, expected)
        for (name, ident), (p, s_) in expected.items():  # the chart's labels and numbers
            self.assertIn(f">{name} · {ident}</text>", drv.page_source)
            self.assertIn(f">{p} / {s_}</text>", drv.page_source)
        screenshot(drv, os.path.join(self.shots, "portal-history-shared-desktop.png"), 1280)
        screenshot(drv, os.path.join(self.shots, "portal-history-shared-mobile.png"), 390)
        # Another subscriber's page shows none of it.
        self.open_link(drv, "sub-1002")
        self.assertIn("None of your identifiers went to a recipient",
                      drv.find_element(By.CSS_SELECTOR, "section.shared").text)


class ExpiredLinkTest(unittest.TestCase):
    def test_an_expired_link_is_refused(self):
        tmp = tempfile.mkdtemp(prefix="portal-test-")
        d = PortalDaemon(portal_section(tmp, "signed-link", "  link_lifetime: 1s\n"))
        drv = browser(tmp)
        try:
            link = d.link("sub-1001")
            expires = datetime.datetime.fromisoformat(link["expires"].replace("Z", "+00:00")).timestamp()
            eventually(lambda: time.time() > expires + 0.2, "the link's expiry")
            drv.get(link["url"])
            self.assertEqual(drv.find_element(By.TAG_NAME, "h1").text, "This link has expired")
            drv.get(d.portal_url("/"))
            self.assertEqual(drv.find_element(By.TAG_NAME, "h1").text, "Your session has ended")
        finally:
            drv.quit()
            d.cleanup()
            shutil.rmtree(tmp, ignore_errors=True)


class TlsTest(unittest.TestCase):
    def test_consentd_serves_the_page_over_tls_with_a_secure_cookie(self):
        tmp = tempfile.mkdtemp(prefix="portal-test-")
        cert, key = os.path.join(tmp, "portal.crt"), os.path.join(tmp, "portal.key")
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                            "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
                           capture_output=True, text=True, timeout=DEADLINE)
        self.assertEqual(r.returncode, 0, r.stderr)
        d = PortalDaemon(portal_section(tmp, "signed-link",
                                        f"  tls: {{certificate: {cert}, private_key: {key}}}\n"))
        drv = browser(tmp, trust_any_certificate=True)
        try:
            link = d.link("sub-1001")
            self.assertTrue(link["url"].startswith(f"https://127.0.0.1:{d.portal_port}/"), link["url"])
            drv.get(link["url"])
            wait_text(drv, "h1", "Your privacy choices")
            self.assertTrue(drv.current_url.startswith("https://"), drv.current_url)
            cookies = drv.get_cookies()
            self.assertTrue(cookies, "no session cookie")
            for c in cookies:
                self.assertTrue(c["secure"], c)
                self.assertTrue(c["httpOnly"], c)
                self.assertEqual(c["sameSite"], "Strict", c)
            # Plain HTTP to the TLS listener gets no page.
            conn = http.client.HTTPConnection("127.0.0.1", d.portal_port, timeout=DEADLINE)
            try:
                conn.request("GET", "/")
                status = conn.getresponse().status
            except (http.client.HTTPException, OSError):
                status = None
            finally:
                conn.close()
            self.assertNotEqual(status, 200)
        finally:
            drv.quit()
            d.cleanup()
            shutil.rmtree(tmp, ignore_errors=True)


class LimitsTest(unittest.TestCase):
    """max_sessions and rate_limits.per_session (docs/portal.md#security)."""

    def test_sessions_are_bounded_and_each_one_is_rate_limited(self):
        tmp = tempfile.mkdtemp(prefix="portal-test-")
        d = PortalDaemon(portal_section(tmp, "signed-link",
                                        "  max_sessions: 2\n  rate_limits: {per_address: 1000, per_session: 5}\n"))

        def get(path, cookie=None):
            c = http.client.HTTPConnection("127.0.0.1", d.portal_port, timeout=DEADLINE)
            c.request("GET", path, headers={"Cookie": "optgate_portal=" + cookie} if cookie else {})
            r = c.getresponse()
            body = r.read().decode()
            c.close()
            m = re.match(r"optgate_portal=([0-9a-f]+);", r.getheader("Set-Cookie") or "")
            return r.status, (m.group(1) if m else None), body

        def open_link(subscriber):
            return get(urllib.parse.urlsplit(d.link(subscriber)["url"]).path)

        try:
            st1, c1, _ = open_link("sub-1001")
            st2, c2, _ = open_link("sub-1002")
            self.assertEqual((st1, st2), (200, 200))
            self.assertTrue(c1 and c2)
            # A third session while two are open: a "busy" page, no session.
            st3, c3, body = open_link("sub-1003")
            self.assertEqual((st3, c3), (503, None), body)
            self.assertIn("Too many people", body)
            # 5 requests a minute per session (the page and receipts alike):
            # the 6th is refused; the other session is not affected.
            statuses = [get("/", c1)[0] for _ in range(5)] + [get("/receipts/1", c1)[0]]
            self.assertEqual(statuses, [200] * 5 + [429])
            st, _, body = get("/", c2)
            self.assertEqual(st, 200)
            # Logging out frees a place.
            csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', body).group(1)
            c = http.client.HTTPConnection("127.0.0.1", d.portal_port, timeout=DEADLINE)
            c.request("POST", "/logout", body="csrf=" + csrf,
                      headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": "optgate_portal=" + c2})
            self.assertEqual(c.getresponse().status, 200)
            c.close()
            st3, c3, _ = open_link("sub-1003")
            self.assertEqual(st3, 200)
            self.assertTrue(c3)
        finally:
            d.cleanup()
            shutil.rmtree(tmp, ignore_errors=True)


class NetworkModeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="portal-test-")
        cls.shots = os.environ.get("PORTAL_SCREENSHOTS") or cls.tmp
        # The test's browser stands behind a "proxy" on loopback that says
        # which subscriber address it serves.
        cls.d = PortalDaemon(portal_section(cls.tmp, "network", "  trusted_proxies: [127.0.0.1]\n"
                                                                "  rate_limits: {per_address: 40}\n"))
        st, _, j = cls.d.request("PUT", "/v1/bindings/100.64.0.20", {"subscriber": "sub-2001", "source": "radius"})
        assert st == 200, j

    @classmethod
    def tearDownClass(cls):
        alive = cls.d.alive()
        cls.d.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert alive, "consentd died during the tests"

    def test_a_bound_address_sees_its_subscriber_and_confirms_once(self):
        drv = browser(self.tmp, headers={"X-Forwarded-For": "100.64.0.20"})
        try:
            drv.get(self.d.portal_url("/"))
            header = drv.find_element(By.TAG_NAME, "header").text
            self.assertIn("100.64.0.20", header)
            self.assertIn("sub-2001", header)
            ads = section(drv, "analytics")
            ads.find_element(By.CSS_SELECTOR, f"label[for='{ads.find_element(By.NAME, 'agree').get_attribute('id')}']"
                             ).click()
            section(drv, "analytics").find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            # One confirmation, naming the line.
            wait_text(drv, "h1", "Confirm the change")
            self.assertIn("100.64.0.20", drv.find_element(By.TAG_NAME, "main").text)
            self.assertEqual(self.d.consents("sub-2001"), {})
            screenshot(drv, os.path.join(self.shots, "portal-network-confirm-mobile.png"), 390)
            drv.find_element(By.CSS_SELECTOR, "main button[type=submit]").click()
            wait_text(drv, ".flash", "“analytics” is on.")
            c = self.d.consents("sub-2001")["analytics"]
            self.assertEqual((c["source"], c["credential"]), ("portal", "portal-network"))
        finally:
            drv.quit()

    def test_an_unbound_address_is_not_recognised(self):
        drv = browser(self.tmp, headers={"X-Forwarded-For": "100.64.0.99"})
        try:
            drv.get(self.d.portal_url("/"))
            self.assertEqual(drv.find_element(By.TAG_NAME, "h1").text, "Address not recognised")
            self.assertIn("100.64.0.99", drv.find_element(By.TAG_NAME, "main").text)
            self.assertEqual(len(drv.find_elements(By.TAG_NAME, "form")), 0)
        finally:
            drv.quit()


    def test_requests_per_address_are_limited(self):
        def get(address):
            c = http.client.HTTPConnection("127.0.0.1", self.d.portal_port, timeout=DEADLINE)
            c.request("GET", "/", headers={"X-Forwarded-For": address})
            r = c.getresponse()
            r.read()
            c.close()
            return r.status
        # 40 a minute: the 41st within the minute is refused; another address is not.
        statuses = [get("100.64.0.21") for _ in range(41)]
        self.assertEqual(statuses, [403] * 40 + [429])
        self.assertEqual(get("100.64.0.22"), 403)


if __name__ == "__main__":
    unittest.main(verbosity=2)
