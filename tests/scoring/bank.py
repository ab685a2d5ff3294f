"""Loads the Universal Bank sample into a profile store with bulk inserts."""

from __future__ import annotations

import csv
import pathlib

from sqlalchemy import insert
from sqlalchemy.engine import Engine

from services.common.profile_tables import attribute_catalog, profile_attributes, profiles

CSV = pathlib.Path(__file__).resolve().parents[2] / "samples" / "universal_bank" / "universal_bank.csv"

# CSV column -> profile attribute name. ZIP Code is left out, like in the reference figures.
COLUMNS = {
    "Age": "age", "Experience": "experience", "Income": "income", "Family": "family",
    "CCAvg": "cc_avg", "Education": "education", "Mortgage": "mortgage",
    "Securities Account": "securities_account", "CD Account": "cd_account",
    "Online": "online", "CreditCard": "credit_card", "Personal Loan": "personal_loan",
}
FEATURES = [a for c, a in COLUMNS.items() if c != "Personal Loan"]
CREATED_MS = 1_600_000_000_000


def read_rows() -> list[dict[str, str]]:
    with CSV.open(newline="") as handle:
        return list(csv.DictReader(handle))


def load_bank(engine: Engine, rows: list[dict[str, str]] | None = None) -> int:
    rows = rows if rows is not None else read_rows()
    with engine.begin() as conn:
        conn.execute(insert(attribute_catalog), [
            {"name": a, "value_type": "number", "description": f"Universal Bank {c}",
             "created_ms": CREATED_MS} for c, a in COLUMNS.items()])
        conn.execute(insert(profiles), [
            {"id": int(r["ID"]), "external_id": f"bank-{r['ID']}", "created_ms": CREATED_MS,
             "updated_ms": CREATED_MS} for r in rows])
        conn.execute(insert(profile_attributes), [
            {"user_id": int(r["ID"]), "name": a, "num_value": float(r[c])}
            for r in rows for c, a in COLUMNS.items()])
    return len(rows)
