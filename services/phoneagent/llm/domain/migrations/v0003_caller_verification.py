"""Caller verification: salted hashes of the booking reference said at booking and, where the
agent file collects it, the caller's date of birth. The caller gives one back (with the caller
ID) to find, move or cancel the booking. Bookings made before this step have neither and can be
changed only by the staff."""

VERSION = 3
DESCRIPTION = "booking reference and date-of-birth hashes"
STATEMENTS = (
    "ALTER TABLE appointments ADD COLUMN reference_hash TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE appointments ADD COLUMN birth_date_hash TEXT NOT NULL DEFAULT ''",
)
