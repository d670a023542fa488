"""Booking references: the salted hash of the reference said at booking, which the caller
gives back (with the caller ID) to find, move or cancel the booking. Bookings made before
this step have none and can be changed only by the staff."""

VERSION = 3
DESCRIPTION = "booking reference hashes"
STATEMENTS = ("ALTER TABLE appointments ADD COLUMN reference_hash TEXT NOT NULL DEFAULT ''",)
