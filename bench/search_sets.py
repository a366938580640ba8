"""Labelled query sets for bench/bench_search.py: each query has planted answer segment(s) in the corpus.

Two sets, kept apart:
- DEV: what search ranking is tuned on. The first 30 paraphrases and the keyword queries (seed 3) are the set
  tuned on before; the rest was added with the held-out set.
- HELDOUT: written once, before any tuning on this set, and only reported on. Do not tune on it, do not edit it
  after seeing its results (write a new one instead).

Kinds of query:
- ``paraphrase``: the query shares (almost) no content word with its one planted segment. Half of the newer ones are
  off-topic for the corpus (outliers), half in its domain (software, meetings, customers, metrics), where many
  generated segments share the query's surface topic.
- ``split``: the answer is said over two consecutive segments of one stream (a transcript cut at a pause: the
  topic in the first, the detail in the second); a hit on either counts.
- ``keyword``: an identifier (error code, hex code, file name) that occurs in exactly one segment.
- ``mixed``: an identifier plus words that are not in the segment ("ERR_X_123 error from the proxy"): the
  identifier must carry it although the other words do not match.
"""
from __future__ import annotations

import random

MODULES = ["billing", "users", "orders", "auth", "search", "reports", "sync", "upload", "cart", "inbox",
           "metrics", "scheduler", "profile", "invoices"]

# ---------------------------------------------------------------------------------------------------- dev
# (planted text, query)
DEV_PARAPHRASES = [
    ("the budget meeting moves to Thursday afternoon", "when is the finance review rescheduled"),
    ("our quarterly board presentation slipped by two weeks", "the investor deck is delayed"),
    ("the intern accidentally deleted the production bucket", "someone wiped the live storage by mistake"),
    ("we are hiring three more backend engineers in Lisbon", "expanding the server team in Portugal"),
    ("the espresso machine on the fourth floor is broken again", "coffee maker upstairs not working"),
    ("the fire alarm test is scheduled for Wednesday at noon", "when is the smoke detector drill"),
    ("my laptop battery dies after forty minutes", "notebook computer does not hold a charge"),
    ("the office will be closed for the public holiday on Monday", "no one at work at the start of the week"),
    ("legal wants the privacy policy rewritten before launch", "lawyers asked for new data protection terms"),
    ("the new hire starts on the first with a badge waiting at reception",
     "front desk has an access card ready for the newcomer"),
    ("our biggest client threatened to cancel their subscription", "major customer might churn"),
    ("the elevator in building B is out of service", "lift not working in the second building"),
    ("we are switching from Jenkins to GitHub Actions next sprint", "migrating our continuous integration"),
    ("the parking garage will be repaved over the weekend", "car park resurfacing on Saturday and Sunday"),
    ("the team offsite is in a cabin near the lake", "retreat at a lakeside lodge"),
    ("she got promoted to director of engineering", "her new role leading the engineering org"),
    ("the printer keeps jamming on double sided pages", "copier paper stuck when printing both sides"),
    ("sales closed a record number of deals in March", "best month ever for new contracts in spring"),
    ("the warehouse robots stopped during the power outage", "automated machines halted when electricity failed"),
    ("the kids birthday party is on Saturday at the zoo", "child celebration with animals this weekend"),
    ("I booked a flight to Tokyo for the conference", "travelling to Japan for the summit"),
    ("the onboarding survey says people feel lost in week one", "new staff are confused early on"),
    ("the dentist appointment conflicts with the demo", "tooth doctor visit clashes with the product showcase"),
    ("the vendor raised their prices by thirty percent", "supplier costs went up a lot"),
    ("the marketing video needs subtitles in Spanish", "add captions in another language to the promo clip"),
    ("we lost the recording of yesterday's interview", "the candidate call video is missing"),
    ("the server room air conditioning failed overnight", "data centre cooling broke while everyone slept"),
    ("the snowstorm means everyone works from home tomorrow", "remote day because of heavy winter weather"),
    ("the keynote speaker cancelled at the last minute", "main presenter pulled out just before the event"),
    ("the accountant found a mistake in last year's taxes", "error discovered in previous annual tax filing"),
    # added with the held-out set: off-topic
    ("the cleaning crew comes on Tuesday nights now", "when do the janitors visit the office"),
    ("somebody left their umbrella in meeting room three", "lost rain gear found in a conference room"),
    ("the water cooler on our floor is empty", "no drinking water left near our desks"),
    ("we adopted a rescue cat for the office", "new pet at work"),
    ("my train was cancelled so I will be late", "running behind because the rail service stopped"),
    ("the company picnic got moved indoors because of rain", "outdoor staff event relocated due to bad weather"),
    ("the wifi password changed this morning", "new wireless network credentials today"),
    ("her visa application was finally approved", "she got the permit to work abroad"),
    ("the microwave in the kitchen caught fire", "small blaze in the break room appliance"),
    ("our landlord is raising the office rent next year", "lease for the workspace will cost more"),
    ("I sprained my ankle playing football on Sunday", "injured my foot during a weekend soccer game"),
    ("the plants in the lobby need watering", "greenery at the entrance is drying out"),
    ("the quarterly bonus will be paid with the June salary", "extra payout arrives with the summer paycheck"),
    ("the bike rack outside is full every morning", "nowhere to park bicycles at the building"),
    ("we ordered pizza for the late night release", "food delivered for the evening launch crew"),
    # added with the held-out set: in the corpus's domain
    ("the checkout flow lost about a fifth of mobile buyers after the redesign",
     "did the new purchase screens hurt phone conversions"),
    ("Globex renewed their contract for three more years", "is the Globex deal extended"),
    ("the on call rotation will include the data team from next month", "analytics engineers joining the pager schedule"),
    ("we are deprecating version one of the public API in the autumn", "old API will be turned off later this year"),
    ("the staging database was restored from last night's backup", "test environment data rolled back to yesterday"),
    ("nobody has reviewed the security audit findings yet", "pentest report still unread"),
    ("the hiring freeze ends in April", "when can we recruit again"),
    ("our cloud bill doubled because a test cluster was left running", "forgotten machines made hosting costs spike"),
    ("Initech wants a discount before they sign", "customer asking for a lower price to close"),
    ("the load balancer certificates expire on Friday", "TLS certs running out at the end of the week"),
    ("Chen is moving to the platform team", "a colleague switching to the infrastructure group"),
    ("customers in Brazil cannot pay with local cards", "payment failures for South American users"),
    ("the release candidate failed the accessibility check", "new build did not pass the screen reader review"),
    ("we will sunset the desktop app by the end of the year", "discontinuing the native client"),
    ("the mobile app crashes on older Android phones", "app closes unexpectedly on legacy devices"),
]

# (first segment, second segment, query)
DEV_SPLIT = [
    ("so what happened with the office move", "we sign the lease for the new floor next Monday",
     "when do we commit to the new workspace"),
    ("quick update on the Lisbon trip", "the flights are booked but the hotel is still open",
     "accommodation not arranged yet for Portugal travel"),
    ("about the customer survey results", "most people want a cheaper plan",
     "what did users say about pricing in the questionnaire"),
    ("regarding the broken projector", "facilities will replace it on Thursday",
     "when is the meeting room beamer getting swapped"),
    ("one more thing about onboarding", "new joiners should get their laptops on day one",
     "equipment ready for newcomers on their first day"),
    ("did you hear about Sam", "he is leaving to start his own company", "colleague quitting to found a startup"),
    ("so the offsite budget", "we can spend about two hundred per person",
     "how much money per attendee for the retreat"),
    ("on the topic of the press release", "marketing wants it out before the trade show",
     "announcement timing relative to the expo"),
    ("last thing, the christmas party", "it will be at the bowling alley downtown", "where is the holiday celebration"),
    ("about the flaky integration tests", "they only fail when the runners are overloaded",
     "CI tests break under heavy machine load"),
    ("the pricing page experiment", "the annual plan banner did not change signups",
     "did the yearly subscription promo affect registrations"),
    ("for the board meeting", "we need the churn numbers split by region",
     "regional breakdown of customer loss for the directors"),
]

DEV_KEYWORD_TEMPLATES = [  # (planted text, query): {code} / {ident} / {n} filled per item
    ("{code}: upstream handshake failed in gateway", "{code}"),
    ("Traceback: {ident}.py line {n} raised {code}", "{code}"),
    ("Build #{n} failed — {code} in {ident}", "{code}"),
    ("Ticket {code} assigned to on-call", "{code}"),
    ("export {ident}=1 && ./run.sh", "{ident}"),
    ("open {ident}.yaml in the editor", "{ident}"),
]
DEV_MIXED_TEMPLATES = [
    ("{code}: upstream handshake failed in gateway", "{code} error from the proxy"),
    ("Build #{n} failed — {code} in {ident}", "why did the build break {code}"),
    ("Ticket {code} assigned to on-call", "who has {code}"),
    ("open {ident}.yaml in the editor", "{ident} config file"),
    ("Traceback: {ident}.py line {n} raised {code}", "crash in {ident}"),
]

# ---------------------------------------------------------------------------------------------- held-out
HELDOUT_PARAPHRASES = [
    # off-topic
    ("the heating in the east wing stopped working last night", "radiators cold on one side of the building"),
    ("our team won the charity run last weekend", "colleagues came first in the fundraising race"),
    ("the library books are due back on the fifteenth", "return the borrowed novels by mid month"),
    ("a pipe burst in the basement and flooded the storage room", "water leak damaged the archive downstairs"),
    ("my daughter starts kindergarten in September", "my child begins preschool after the summer"),
    ("the canteen now serves vegan options on Fridays", "plant based meals at lunch at the end of the week"),
    ("we need to renew our passports before the trip to Canada", "travel documents expiring ahead of the visit north"),
    ("the gym in the basement reopens after renovation", "fitness room available again once the works are done"),
    ("the neighbour's dog barks during every video call", "noisy pet next door interrupts online meetings"),
    ("the power will be shut off on Saturday for maintenance", "planned electricity outage this weekend"),
    ("he ran his first marathon in under four hours", "completed a full distance race quickly"),
    ("the shuttle bus to the station leaves every twenty minutes", "how often does the transit van to the trains run"),
    ("somebody scratched my car in the parking lot", "vehicle damaged while parked at work"),
    ("the annual flu shots are offered at the clinic next week", "vaccination available soon at the health centre"),
    ("the roof leaks above the design studio when it rains",
     "water drips from the ceiling in the creative room during storms"),
    ("I'm taking two weeks off to travel around Italy", "holiday touring the Italian countryside"),
    ("the vending machine only takes coins", "snack dispenser does not accept cards"),
    ("the street outside will be closed for a parade on Sunday", "road blocked for a procession this weekend"),
    ("our mentor program pairs juniors with senior staff", "experienced employees coach newcomers"),
    ("the photocopier ran out of toner again", "printer ink is empty once more"),
    # in the corpus's domain
    ("the search cluster ran out of disk space overnight", "storage full on the search machines"),
    ("Umbrella asked us to host their data in Europe", "customer wants EU data residency"),
    ("we missed the deadline for the Phoenix beta", "the Phoenix preview shipped late"),
    ("the notification service sent duplicate emails to thousands of users", "people received the same message twice"),
    ("Hooli is evaluating a competitor", "a customer is looking at rival products"),
    ("the intern rewrote the export worker in Rust", "a student redid the export job in a different language"),
    ("the dashboard shows revenue in the wrong currency", "money figures display the incorrect unit"),
    ("we will freeze merges during the holiday week", "no code changes allowed over the break"),
    ("Leila is presenting the roadmap to the whole company", "product plan presentation at the all staff meeting"),
    ("the signup form rejects email addresses with a plus sign", "registration fails for some valid addresses"),
    ("support tickets doubled after the price change", "more complaints since the pricing update"),
    ("the auth proxy logs contain customer passwords in plain text", "credentials visible in the gateway logs"),
    ("we are moving the analytics job to run every hour instead of nightly", "reporting pipeline switching to hourly runs"),
    ("Stark Industries wants single sign on before rolling out to all staff",
     "enterprise client needs SSO for a company wide deployment"),
    ("the cache layer hides stale prices for up to a day", "outdated pricing served from cached data"),
    ("the team agreed to drop support for Internet Explorer", "we no longer cover the old Microsoft browser"),
    ("Nina found that the video encoder drops frames at high resolution", "stuttering output from the encoder on 4K input"),
    ("we should add rate limits to the public API before launch", "throttle external requests prior to release"),
    ("the quarterly report is missing the numbers from March", "spring data absent from the quarterly summary"),
    ("Vandelay's invoices were sent to the wrong address", "billing for a client went to an incorrect location"),
]

HELDOUT_SPLIT = [
    ("next topic, the kitchen renovation", "it starts in two weeks and takes a month",
     "when does the break room remodel begin"),
    ("about Omar's leave", "he will be back at the start of March", "when does Omar return"),
    ("regarding the conference booth", "we still need someone to staff it on day two", "volunteers missing for the expo stand"),
    ("quick note on the new laptops", "they arrive on Wednesday but without chargers", "hardware delivery incomplete"),
    ("so the mobile release", "Apple rejected it because of the login screen", "app store refused our iPhone build"),
    ("the Acme escalation", "their CEO emailed our CEO directly", "customer executive complained to leadership"),
    ("one thing about the data migration", "we have to keep the old tables for ninety days",
     "retention period for legacy database tables"),
    ("for the team dinner", "Marcus booked the Thai place near the station", "restaurant reservation for the group meal"),
    ("about the interns", "two of them will stay on as full time hires", "summer students getting permanent jobs"),
    ("the noise complaints", "people want quiet hours in the open space", "request for silent periods in the shared office"),
    ("on the partner integration", "their sandbox has been down since Monday",
     "test environment of the partner unavailable this week"),
    ("about my laptop", "the screen flickers whenever I plug in the dock", "display glitches with the docking station"),
    ("the support backlog", "we are answering tickets after four days on average", "slow response times for customer requests"),
    ("about Kenji's idea", "he wants to replace standups with written updates", "proposal to swap daily meetings for async notes"),
    ("the security training", "everyone has to finish it by the end of the quarter",
     "deadline for the mandatory security course"),
    ("the datacenter move", "the old racks get shipped to Frankfurt in May", "servers relocating to Germany"),
]

HELDOUT_KEYWORD_TEMPLATES = [
    ("deploy of {ident} rolled back after {code}", "{code}"),
    ("{code} returned by the billing API for invoice {n}", "{code}"),
    ("merged branch {ident} into main", "{ident}"),
    ("alert {code}: disk usage above ninety percent on {ident}", "{code}"),
    ("customer reported {code} when exporting {ident}.csv", "{ident}"),
]
HELDOUT_MIXED_TEMPLATES = [
    ("deploy of {ident} rolled back after {code}", "{code} rollback"),
    ("{code} returned by the billing API for invoice {n}", "payment service failing with {code}"),
    ("merged branch {ident} into main", "was {ident} integrated"),
    ("alert {code}: disk usage above ninety percent on {ident}", "{ident} storage almost full"),
    ("customer reported {code} when exporting {ident}.csv", "{ident} export problem"),
]

_SYL = ["zor", "vak", "qui", "plen", "trax", "mul", "dex", "yor", "fen", "gib", "wum", "kri"]


def _generated(templates, count: int, r: random.Random) -> list[tuple[str, str]]:
    out = []
    for i in range(count):
        code = f"ERR_{r.choice(_SYL).upper()}{r.choice(_SYL).upper()}_{r.randint(100, 999)}" if i % 2 else \
            f"0x{r.getrandbits(32):08X}"
        ident = f"{r.choice(_SYL)}{r.choice(_SYL)}_{r.choice(MODULES)}_v{r.randint(2, 9)}"
        text, query = templates[i % len(templates)]
        n = r.randint(100, 9999)
        out.append((text.format(code=code, ident=ident, n=n), query.format(code=code, ident=ident, n=n)))
    return out


class Item:
    """One labelled query: its text, kind, and the planted segment texts (one, or two consecutive)."""

    def __init__(self, query: str, kind: str, texts: tuple[str, ...], split: str):
        self.query, self.kind, self.texts, self.split = query, kind, texts, split

    def __repr__(self) -> str:
        return f"Item({self.split}/{self.kind}: {self.query!r} -> {self.texts!r})"


def labelled(which: str) -> list[Item]:
    """The items of ``dev`` or ``heldout``."""
    if which == "dev":
        r = random.Random(3)  # the keyword queries tuned on before
        para, split = DEV_PARAPHRASES, DEV_SPLIT
        kw = _generated(DEV_KEYWORD_TEMPLATES, 30, r)
        mixed = _generated(DEV_MIXED_TEMPLATES, 10, random.Random(31))
    elif which == "heldout":
        para, split = HELDOUT_PARAPHRASES, HELDOUT_SPLIT
        kw = _generated(HELDOUT_KEYWORD_TEMPLATES, 20, random.Random(1009))
        mixed = _generated(HELDOUT_MIXED_TEMPLATES, 10, random.Random(2027))
    else:
        raise ValueError(f"unknown query set {which!r}: dev or heldout")
    items = [Item(q, "paraphrase", (t,), which) for t, q in para]
    items += [Item(q, "split", (a, b), which) for a, b, q in split]
    items += [Item(q, "keyword", (t,), which) for t, q in kw]
    items += [Item(q, "mixed", (t,), which) for t, q in mixed]
    return items
