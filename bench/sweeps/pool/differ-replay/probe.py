"""Keyword proxy for off-domain teacher text on sentiment (movie reviews)."""
import re, sqlite3, sys
FILM = re.compile(r"\b(film|films|movie|movies|actor|actors|actress|cast|director|directed|directing|plot|script|screenplay|screen|comedy|comedies|drama|thriller|scene|scenes|performance|performances|cinema|cinematic|sequel|documentary|animated|animation|character|characters|hollywood|filmmaker|filmmakers|picture|audience|audiences|watch|watching|watched|viewer|viewers|theater|theatre|story|storytelling|acting|role|cameo|horror|genre|trailer|box office|oscar)\b", re.I)
OFF = re.compile(r"\b(restaurant|restaurants|meal|food|dish|chef|waiter|hotel|product|phone|laptop|car|book|novel|reading|read|album|song|songs|concert|band|game|games|vacation|trip|service|store|shop|customer|purchase|bought|price|expensive|weather|job|class|teacher|school|party|painting|museum|exhibit|exhibition|play|musical|show)\b", re.I)
db = sqlite3.connect(sys.argv[1])
def rows(q, *a): return [r[0] for r in db.execute(q, a)]
for label, runs in [("teach_all", (4, 10)), ("diverse_all", (67, 68))]:
    for status in ("kept", "rejected"):
        texts = rows(f"select input from examples where split='synthetic' and status=? and run_id in ({','.join(map(str, runs))})", status)
        film = sum(bool(FILM.search(t)) for t in texts)
        off = sum(bool(OFF.search(t)) and not FILM.search(t) for t in texts)
        print(f"{label:12s} {status:9s} n={len(texts):3d} film-cue={film/len(texts):.0%} off-cue-only={off:3d} ({off/len(texts):.0%}) neither={len(texts)-film-off}")
texts = rows("select input from examples where split='test' and run_id=4")
film = sum(bool(FILM.search(t)) for t in texts); off = sum(bool(OFF.search(t)) and not FILM.search(t) for t in texts)
print(f"real test    n={len(texts)} film-cue={film/len(texts):.0%} off-cue-only={off} ({off/len(texts):.0%})")
print("--- diverse_all kept, no film cue:")
for t in rows("select input from examples where split='synthetic' and status='kept' and run_id in (67,68)"):
    if not FILM.search(t): print(" *", t[:150])
