"""Seed 000's story clicked through the console in headless Chromium (run by tests/console.rs).

alice asks for a promotion of a dev package to QA; a second request for QA cannot be
chosen, and says why; bob sees the task with its plan and accepts it; alice asks again
(an update), bob rejects it; alice asks again and cancels; gina promotes a Globex API to
production (having allowed self-approval there), which arrives without its members and
groups; the admin reads the audit
trail; bob rolls the QA installation back. Screenshots of each step go to SCREENSHOTS.

Usage: console_e2e.py BASE_URL SCREENSHOTS_DIR
"""
import json
import os
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

BASE, SHOTS = sys.argv[1].rstrip("/"), sys.argv[2]
API = BASE + "/environment-promotion/v1"
ONBOARDING = "6419b8b9001151ee258921a4f7597bb2"
PAYMENTS_API = "5e8f2c1a7b3d4e6f9a0c1b2d538453d7"


def call(method, path, token=None, body=None):
    request = urllib.request.Request(API + path, method=method, data=None if body is None else json.dumps(body).encode())
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(request) as response:
        return json.load(response)["data"]


def token(client):
    return call("POST", "/token", body={"clientId": client, "clientSecret": client + "-secret"})["accessToken"]


def package(owner, name, source, obj_code, object_id, statuses):
    """A package of one root, extracted, then moved through `statuses`."""
    created = call("POST", "/packages", owner, {"packageName": name, "source": source,
                                                "objectCollections": [{"objCode": obj_code, "entities": [{"ID": object_id}]}]})
    for _ in range(300):
        current = call("GET", "/packages/" + created["id"], owner)
        if current["status"] != "EXTRACTING":
            break
        time.sleep(0.05)
    assert current["status"] == "BUILDING", current
    for status in statuses:
        current = call("PATCH", "/packages/" + created["id"], owner, {"status": status, "etag": current["etag"]})
    return current


options = webdriver.ChromeOptions()
options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000", "--disable-gpu"):
    options.add_argument(flag)
driver = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")), options=options)
wait = WebDriverWait(driver, 20)
shot_number = [0]


def shot(name):
    shot_number[0] += 1
    driver.save_screenshot(os.path.join(SHOTS, "%02d-%s.png" % (shot_number[0], name)))


def by_id(element_id):
    return wait.until(EC.visibility_of_element_located((By.ID, element_id)))


def labelled(label):
    return wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, '[aria-label="%s"]' % label)))


def status_says(text):
    wait.until(EC.text_to_be_present_in_element((By.ID, "status"), text))


def sign_in(client):
    if driver.find_element(By.ID, "sign-out").is_displayed():
        driver.find_element(By.ID, "sign-out").click()
    field = by_id("client-id")
    field.clear()
    field.send_keys(client)
    secret = driver.find_element(By.ID, "client-secret")
    secret.send_keys(client + "-secret", Keys.ENTER)  # the keyboard signs in
    status_says("Signed in as " + client)


def tab(name):
    driver.find_element(By.CSS_SELECTOR, '.tab[data-section="%s"]' % name).click()


def environment(display_name):
    button = wait.until(EC.element_to_be_clickable(
        (By.XPATH, '//ul[@id="environment-list"]//button[starts-with(normalize-space(.), "%s")]' % display_name)))
    button.click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "packages-title"), display_name))


def settled(action):
    """`action`, again while the page is still re-rendering what it touches."""
    for _ in range(50):
        try:
            return action()
        except StaleElementReferenceException:
            time.sleep(0.1)
    return action()


def open_promote(package_name):
    settled(lambda: labelled("Promote " + package_name).click())
    return by_id("promote-dialog")


def promote(package_name, target, comment):
    open_promote(package_name)
    choice = wait.until(EC.element_to_be_clickable((By.ID, "target-" + target)))
    choice.send_keys(Keys.SPACE)  # radios are chosen from the keyboard
    driver.find_element(By.ID, "promote-comment").send_keys(comment)
    driver.find_element(By.ID, "promote-submit").click()
    status_says("requested: TO_BE_VALIDATED")


def decide(verb, package_name, target_label, comment):
    what = "%s to %s" % (package_name, target_label)

    def act():
        labelled("%s %s" % (verb, what))
        field = driver.find_element(By.XPATH, '//label[normalize-space(.)="Comment on %s"]' % what)
        driver.find_element(By.ID, field.get_attribute("for")).send_keys(comment)
        labelled("%s %s" % (verb, what)).click()

    settled(act)
    status_says(what + ": " + ("ACCEPTED" if verb == "Accept" else "REJECTED"))


try:
    alice, gina = token("alice"), token("gina")
    template = package(alice, "Agency onboarding template", "dev", "TMPL", ONBOARDING, ["PREVIEW"])
    name = template["name"]

    driver.get(BASE + "/")
    by_id("sign-in")
    shot("sign-in")
    sign_in("alice")
    environment("Development")
    shot("packages")

    # alice asks for QA.
    promote(name, "qa", "ready for QA")
    shot("requested")

    # A second request for QA cannot be chosen, and the dialog says why.
    open_promote(name)
    qa = by_id("target-qa")
    assert not qa.is_enabled(), "a pending target must be disabled"
    why = driver.find_element(By.ID, "target-qa-why").text
    assert "pending" in why and "alice" in why, why
    assert by_id("target-prod").is_enabled()
    shot("pending-target-disabled")
    driver.find_element(By.ID, "promote-cancel").click()

    # bob, approver of QA, sees the task with its plan, and accepts it.
    sign_in("bob")
    tab("tasks")
    labelled("Accept %s to Quality assurance" % name)
    assert settled(lambda: "first promotion there" in driver.find_element(By.ID, "task-list").text)
    settled(lambda: driver.find_element(By.CSS_SELECTOR, "#task-list details summary").click())
    plan = settled(lambda: driver.find_element(By.CSS_SELECTOR, "#task-list details table").text)
    assert "New Agency Onboarding" in plan and "CREATE" in plan and "NAME_MATCH" in plan, plan
    shot("tasks")
    decide("Accept", name, "Quality assurance", "looks good")
    wait.until(EC.text_to_be_present_in_element((By.ID, "task-list"), "No tasks."))
    objects = call("GET", "/environments/qa/objects?objCode=TMPL&namePrefix=New%20Agency", token("bob"))
    assert any(o["name"] == "New Agency Onboarding" for o in objects), objects

    # Once accepted, alice may ask again: an update, which bob rejects.
    sign_in("alice")
    environment("Development")
    promote(name, "qa", "second round")
    sign_in("bob")
    tab("tasks")
    labelled("Reject %s to Quality assurance" % name)
    assert settled(lambda: "update: installed there before" in driver.find_element(By.ID, "task-list").text)
    decide("Reject", name, "Quality assurance", "not this sprint")

    # alice asks once more and withdraws it from the history.
    sign_in("alice")
    environment("Development")
    promote(name, "qa", "third time")
    tab("history")
    settled(lambda: labelled("Cancel the request of %s to Quality assurance" % name).click())
    status_says(name + ": CANCELLED")
    history = driver.find_element(By.ID, "requests").text
    for status in ("ACCEPTED", "REJECTED", "CANCELLED"):
        assert status in history, history
    assert "not this sprint" in history, history
    shot("history")

    # gina promotes a Globex API to production; it arrives without members and groups. She
    # is Globex's only user, so as its admin she first allows self-approval there.
    policy = call("GET", "/environments/globex-prod/policy", gina)
    call("PATCH", "/environments/globex-prod/policy", gina, {"allowSelfApproval": True, "etag": policy["etag"]})
    api_package = package(gina, "Payments API", "globex-dev", "API", PAYMENTS_API, ["PREVIEW", "PUBLIC"])
    sign_in("gina")
    environment("Globex development")
    promote(api_package["name"], "globex-prod", "go live")
    tab("tasks")
    decide("Accept", api_package["name"], "Globex production", "approved")
    shot("api-accepted")
    apis = call("GET", "/environments/globex-prod/objects?objCode=API", gina)
    payments = [a for a in apis if a["name"] == "Payments API"]
    assert payments and "members" not in payments[0]["fields"] and "groups" not in payments[0]["fields"], apis
    assert call("GET", "/environments/globex-prod/objects?objCode=MEMBER", gina) == []

    # The audit trail is for admins: bob has no Audit section, the admin has.
    sign_in("bob")
    assert not driver.find_element(By.ID, "audit-tab").is_displayed()
    sign_in("admin")
    tab("audit")
    wait.until(EC.text_to_be_present_in_element((By.ID, "audit-events"), "PROMOTION_ACCEPTED"))
    trail = driver.find_element(By.ID, "audit-events").text
    for action in ("PROMOTION_REQUESTED", "PROMOTION_REJECTED", "PROMOTION_CANCELLED", "INSTALLATION_COMPLETED"):
        assert action in trail, action
    shot("audit")

    # bob rolls the QA installation back from the history.
    sign_in("bob")
    tab("history")
    settled(lambda: wait.until(EC.element_to_be_clickable(
        (By.CSS_SELECTOR, '#installations button[aria-label$="into Quality assurance"]'))).click())
    status_says("Installation into Quality assurance: ROLLED_BACK")
    shot("rolled-back")
    print("console story: ok")
except Exception:
    shot("failure")
    print(driver.find_element(By.TAG_NAME, "body").text, file=sys.stderr)
    raise
finally:
    driver.quit()
