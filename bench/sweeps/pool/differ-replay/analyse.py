"""Off-domain share of the replayed calls: old differ clause (stored replies) against the new one."""
import json, re, sys
sys.path.insert(0, "/tmp/topic")
FILM = re.compile(r"\b(film|films|movie|movies|actor|actors|actress|cast|director|directed|directing|plot|script|screenplay|screen|comedy|comedies|drama|thriller|scene|scenes|performance|performances|cinema|cinematic|sequel|documentary|animated|animation|character|characters|hollywood|filmmaker|filmmakers|picture|audience|audiences|watch|watching|watched|viewer|viewers|theater|theatre|story|storytelling|acting|role|cameo|horror|genre|trailer|box office|oscar|cinematography|dialogue|pacing|direction|soundtrack|premise|ending|finale)\b", re.I)
OFF = re.compile(r"\b(restaurant|restaurants|meal|food|dish|chef|waiter|hotel|product|phone|laptop|car|book|novel|album|song|songs|concert|band|game|games|vacation|trip|service|store|shop|customer|purchase|bought|price|weather|job|class|teacher|school|party|painting|museum|exhibit|exhibition|campaign|election|table|chair|computer|app|software)\b", re.I)
rows = json.load(open(sys.argv[1]))
def examples(text):
    try:
        return [(e.get("text") or e.get("input") or "") if isinstance(e, dict) else str(e) for e in json.loads(text)["examples"]]
    except Exception:
        return []
for side in ("old", "new"):
    texts = [t for r in rows for t in examples(r[side])]
    film = sum(bool(FILM.search(t)) for t in texts)
    off = [t for t in texts if OFF.search(t) and not FILM.search(t)]
    neither = [t for t in texts if not FILM.search(t) and not OFF.search(t)]
    print(f"{side}: {len(texts)} written, film cue {film} ({film/len(texts):.0%}), off-domain cue only {len(off)} ({len(off)/len(texts):.0%}), neither {len(neither)}")
    if "-v" in sys.argv:
        for t in off: print("   OFF", t[:140])
        for t in neither: print("   ???", t[:140])
