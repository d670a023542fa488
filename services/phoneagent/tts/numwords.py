"""English number words for speech: cardinals, ordinals, years, digit strings."""

from __future__ import annotations

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_WORDS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
MAX_CARDINAL = 10**15 - 1


def _below_hundred(n: int) -> str:
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] if ones == 0 else f"{_TENS[tens]}-{_ONES[ones]}"


def _below_thousand(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    parts = []
    if hundreds:
        parts.append(f"{_ONES[hundreds]} hundred")
    if rest or not hundreds:
        parts.append(_below_hundred(rest))
    return " ".join(parts)


def cardinal(n: int) -> str:
    """``42`` -> ``forty-two``; ``1200`` -> ``one thousand two hundred``; negatives say "minus"."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n > MAX_CARDINAL:
        return digits(str(n))
    if n < 1000:
        return _below_thousand(n)
    parts = []
    for scale, word in _SCALES:
        count, n = divmod(n, scale)
        if count:
            parts.append(f"{_below_thousand(count)} {word}")
    if n:
        parts.append(_below_thousand(n))
    return " ".join(parts)


def ordinal(n: int) -> str:
    """``23`` -> ``twenty-third``; ``100`` -> ``one hundredth``."""
    words = cardinal(n)
    head, sep, last = max(words.rpartition(" "), words.rpartition("-"), key=lambda p: len(p[0]))
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return f"{head}{sep}{last}"


def year(n: int) -> str:
    """``2026`` -> ``twenty twenty-six``; ``2005`` -> ``two thousand five``; ``1900`` -> ``nineteen
    hundred``."""
    if not 1000 <= n <= 9999 or 2000 <= n <= 2009:
        return cardinal(n)
    high, low = divmod(n, 100)
    if low == 0:
        return f"{cardinal(high)} hundred"
    if low < 10:
        return f"{cardinal(high)} oh {_ONES[low]}"
    return f"{cardinal(high)} {_below_hundred(low)}"


def digits(text: str) -> str:
    """Each digit by name: ``"0132"`` -> ``zero one three two`` (non-digits are dropped)."""
    return " ".join(_ONES[int(ch)] for ch in text if ch.isdigit())


def decimal(text: str) -> str:
    """``"3.5"`` -> ``three point five``; ``"0.25"`` -> ``zero point two five``."""
    whole, _, frac = text.partition(".")
    head = cardinal(int(whole.replace(",", ""))) if whole else "zero"
    return f"{head} point {digits(frac)}" if frac else head


def group_digits(run: str) -> list[str]:
    """Split an unbroken digit run into groups a listener can follow (4s for 8/12/16 digits, else 3s)."""
    n = len(run)
    if n <= 5:
        return [run]
    if n % 4 == 0 and n <= 16:
        return [run[i : i + 4] for i in range(0, n, 4)]
    groups = [run[i : i + 3] for i in range(0, n, 3)]
    if len(groups[-1]) == 1:
        tail = groups.pop()
        groups[-1] += tail
    return groups
