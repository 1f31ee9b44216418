"""Seeded task data: short documents of facts about fictional entities (people, towns, products),
questions about them with short exact answers, and the name pools that keep evaluation entities
out of training. All text is ASCII.

A document states 3-5 attributes of one entity, each in a sentence drawn from several templates,
in random order, sometimes with a filler sentence. A question asks for one stated attribute:
  prompt  "Q: Where does Kavel Drossum live?\\nA:"   answer " Osterby"
The answer's value comes from a pool per attribute, so without the document the best guess is
chance (1 / pool size)."""

import random
import zlib

SYLLABLES = [
    "ka", "ro", "mel", "vin", "dra", "tos", "ul", "zen", "bri", "ath", "lo", "quen", "sa", "tir",
    "mar", "el", "dun", "fa", "gor", "hil", "ja", "ket", "lis", "mor", "nal", "ob", "per", "ras",
    "sel", "tam", "ur", "vel", "wen", "yor", "zal", "bel", "cor", "dev", "fin", "gal", "har", "ist",
    "jor", "kel", "lun", "mir", "nor", "ost", "pal", "rin", "sor", "tel", "van", "wil", "xan", "yel",
]


def _word(rng, n_min, n_max):
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(n_min, n_max))).capitalize()


def _value_pool(seed, size, n_min, n_max):
    rng = random.Random(seed)
    pool = []
    while len(pool) < size:
        w = _word(rng, n_min, n_max)
        if w not in pool:
            pool.append(w)
    return pool


CITIES = _value_pool(101, 60, 2, 3)
REGIONS = _value_pool(102, 30, 2, 3)
RIVERS = _value_pool(103, 30, 2, 2)
COMPANIES = _value_pool(104, 40, 2, 2)
JOBS = ["baker", "carpenter", "teacher", "sailor", "painter", "farmer", "doctor", "lawyer", "miner",
        "weaver", "potter", "singer", "tailor", "pilot", "chemist", "florist", "butcher", "judge",
        "nurse", "gardener", "mason", "writer", "dentist", "banker", "fisher", "hunter", "poet",
        "glazier", "cobbler", "brewer"]
COLORS = ["red", "blue", "green", "amber", "violet", "teal", "orange", "gray", "white", "black",
          "pink", "gold", "silver", "brown", "crimson", "ivory", "olive", "navy", "cyan", "indigo"]
ANIMALS = ["cat", "dog", "parrot", "goat", "horse", "rabbit", "turtle", "hamster", "ferret", "owl",
           "lizard", "pony", "donkey", "goose", "snake", "mouse", "pig", "sheep", "duck", "crow"]
INSTRUMENTS = ["violin", "piano", "flute", "drums", "harp", "cello", "trumpet", "guitar", "oboe",
               "banjo", "organ", "clarinet", "tuba", "lute", "horn"]
FOODS = ["cheese", "bread", "honey", "apples", "fish", "sausages", "pies", "wine", "beer", "soup",
         "plums", "noodles", "pears", "cakes", "olives", "mushrooms", "salmon", "figs", "nuts",
         "dumplings"]
MATERIALS = ["steel", "wood", "glass", "copper", "plastic", "leather", "bronze", "stone", "paper",
             "clay", "iron", "silk", "wool", "bamboo", "marble"]
YEARS = [str(y) for y in range(1900, 2000)]
PRICES = [str(p) for p in range(10, 100)]

# attribute -> (value pool, fact templates, question templates)
PERSON = {
    "city": (CITIES, ["{n} lives in {v}.", "{n} has a home in {v}.", "The home of {n} is in {v}."],
             ["Where does {n} live?", "In which town does {n} live?"]),
    "job": (JOBS, ["{n} works as a {v}.", "By trade, {n} is a {v}.", "The job of {n} is {v}."],
            ["What is the job of {n}?", "What does {n} work as?"]),
    "color": (COLORS, ["The favorite color of {n} is {v}.", "{n} likes the color {v} best.",
                       "{n} loves the color {v}."],
              ["What is the favorite color of {n}?", "Which color does {n} like best?"]),
    "pet": (ANIMALS, ["{n} keeps a {v} as a pet.", "The pet of {n} is a {v}.", "{n} owns a pet {v}."],
            ["What pet does {n} keep?", "What animal is the pet of {n}?"]),
    "year": (YEARS, ["{n} was born in {v}.", "The birth year of {n} is {v}.", "{n} came into the world in {v}."],
             ["When was {n} born?", "In which year was {n} born?"]),
    "instrument": (INSTRUMENTS, ["{n} plays the {v}.", "The instrument of {n} is the {v}.",
                                 "{n} has played the {v} for years."],
                   ["Which instrument does {n} play?", "What does {n} play?"]),
}
TOWN = {
    "region": (REGIONS, ["{n} lies in the region of {v}.", "The town of {n} is part of {v}.",
                         "{n} is a town in {v}."],
               ["In which region is {n}?", "Where does the town {n} lie?"]),
    "river": (RIVERS, ["{n} stands on the river {v}.", "The river {v} flows through {n}.",
                       "{n} was built on the banks of the {v}."],
              ["Which river flows through {n}?", "On which river does {n} stand?"]),
    "food": (FOODS, ["{n} is famous for its {v}.", "People visit {n} for its {v}.",
                     "The best known food of {n} is {v}."],
             ["What is {n} famous for?", "What food is {n} known for?"]),
    "founded": (YEARS, ["{n} was founded in {v}.", "The town of {n} dates from {v}.",
                        "{n} got its charter in {v}."],
                ["When was {n} founded?", "In which year was {n} founded?"]),
}
PRODUCT = {
    "maker": (COMPANIES, ["The {n} is made by {v}.", "{v} builds the {n}.", "The maker of the {n} is {v}."],
              ["Who makes the {n}?", "Which company builds the {n}?"]),
    "material": (MATERIALS, ["The {n} is made of {v}.", "The body of the {n} is {v}.",
                             "The {n} has a case of {v}."],
                 ["What is the {n} made of?", "Which material is the {n} made of?"]),
    "price": (PRICES, ["The {n} costs {v} dollars.", "The price of the {n} is {v} dollars.",
                       "You can buy the {n} for {v} dollars."],
              ["How many dollars does the {n} cost?", "What is the price of the {n} in dollars?"]),
    "color": (COLORS, ["The {n} comes in {v}.", "The color of the {n} is {v}.", "The {n} is painted {v}."],
              ["What color is the {n}?", "Which color does the {n} come in?"]),
    "released": (YEARS, ["The {n} came out in {v}.", "The {n} was released in {v}.",
                         "The first {n} was sold in {v}."],
                 ["When did the {n} come out?", "In which year was the {n} released?"]),
}
KINDS = {"person": PERSON, "town": TOWN, "product": PRODUCT}
FILLERS = ["It rained a lot that year.", "Many visitors came in the summer.",
           "The old road was repaired last spring.", "Nobody remembers the exact details.",
           "The local paper wrote about it once.", "Some say the story is older."]

# Names split into training and evaluation pools by a hash of the whole name: an evaluation
# entity's name never appears in training text.
EVAL_FRACTION = 10  # one name in EVAL_FRACTION is for evaluation


def _is_eval_name(name):
    return zlib.crc32(name.encode()) % EVAL_FRACTION == 0


def _entity_name(rng, kind):
    if kind == "person":
        return _word(rng, 1, 2) + " " + _word(rng, 2, 3)
    if kind == "town":
        return _word(rng, 2, 3)
    return _word(rng, 2, 2) + " " + str(rng.randint(2, 99))


class Example:
    """One entity's document and one question about it. `value_spans` are the [start, end)
    character ranges of every stated value in the document (what a memory must keep)."""

    def __init__(self, kind, name, document, prompt, answer, attribute, value_spans):
        self.kind, self.name, self.document = kind, name, document
        self.prompt, self.answer, self.attribute = prompt, answer, attribute
        self.value_spans = value_spans


class Generator:
    def __init__(self, seed, split="train"):
        self.rng = random.Random(seed)
        self.eval = split == "eval"

    def name(self, kind):
        while True:
            n = _entity_name(self.rng, kind)
            if _is_eval_name(n) == self.eval:
                return n

    def example(self):
        rng = self.rng
        kind = rng.choice(list(KINDS))
        attrs = KINDS[kind]
        name = self.name(kind)
        chosen = rng.sample(list(attrs), rng.randint(3, min(5, len(attrs))))
        values = {a: rng.choice(attrs[a][0]) for a in chosen}
        # (sentence, offset of its value, value length); the offset is found through a marker
        # because the name, of any length, may come before the value. Fillers have no value.
        sentences = []
        for a in chosen:
            marked = rng.choice(attrs[a][1]).format(n=name, v="\0")
            sentences.append((marked.replace("\0", values[a]), marked.index("\0"), len(values[a])))
        if rng.random() < 0.3:
            sentences.insert(rng.randint(0, len(sentences)), (rng.choice(FILLERS), None, 0))
        document, value_spans = "", []
        for text, offset, length in sentences:
            if document:
                document += " "
            if offset is not None:
                value_spans.append((len(document) + offset, len(document) + offset + length))
            document += text[0].upper() + text[1:]
        asked = rng.choice(chosen)
        question = rng.choice(attrs[asked][2]).format(n=name)
        return Example(kind, name, document, f"Q: {question}\nA:", " " + values[asked], asked,
                       value_spans)

    def corpus(self, n):
        """Text for learning the tokenizer: documents, prompts and answers."""
        out = []
        for _ in range(n):
            e = self.example()
            out.append(e.document)
            out.append(e.prompt + e.answer)
        return out


def chance(attribute, kind):
    return 1.0 / len(KINDS[kind][attribute][0])
