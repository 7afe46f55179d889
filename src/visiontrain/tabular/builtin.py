"""A built-in customer-churn table, generated deterministically, so the tabular task runs with no download.

It has the Telco customer-churn columns and vocabularies, a churn label drawn from a logistic model of the
features (month-to-month contracts, fiber, electronic checks, short tenure and high charges raise churn; long
contracts lower it), about 25% positives, and the mess real exports have: blank TotalCharges for new
customers, stray whitespace, yes/no in other cases, exact duplicate rows, missing charges, unknown categories,
rows without a label and impossible tenures. Written once as a CSV, it is then read like any user's file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from visiontrain.core.atomic import write_atomically
from visiontrain.core.files import sha256_of_file
from visiontrain.errors import DataError

GENERATOR = "churn-v1"  # bump when the generated table changes, so materialised copies are rewritten
YES_NO = ["No", "Yes"]
SERVICE = ["No", "Yes", "No internet service"]
CONTRACTS = ["Month-to-month", "One year", "Two year"]
INTERNET = ["DSL", "Fiber optic", "No"]
PAYMENTS = ["Electronic check", "Mailed check", "Bank transfer (automatic)", "Credit card (automatic)"]
ADD_ONS = ("OnlineSecurity", "OnlineBackup", "DeviceProtection", "TechSupport", "StreamingTV",
           "StreamingMovies")
TEXT_COLUMNS = ("gender", "Partner", "Dependents", "PhoneService", "InternetService", "Contract",
                "PaymentMethod", "PaperlessBilling")
YES_NO_COLUMNS = ("Partner", "Dependents", "PhoneService", "PaperlessBilling")


def generate_churn_table(rows: int = 4000, seed: int = 0) -> pd.DataFrame:
    """``rows`` raw rows (strings, as a CSV export has them) in the Telco layout; same seed, same table."""
    if rows < 200:
        raise ValueError(f"the built-in churn table needs at least 200 rows to hold its mess, got {rows}")
    rng = np.random.default_rng(seed)
    n_duplicates = max(2, rows // 200)  # ~0.5% exact duplicate rows
    table = _customers(rng, rows - n_duplicates)
    spoiled = _spoil(table, rng)
    return _add_duplicates(table, rng, n_duplicates, exclude=spoiled)


def _pick(rng: np.random.Generator, values: list[str], p: np.ndarray | list[float], n: int) -> np.ndarray:
    """``n`` draws from ``values``; ``p`` holds weights: one vector for all rows, or one per row."""
    cumulative = np.cumsum(np.broadcast_to(np.asarray(p, dtype=float), (n, len(values))), axis=1)
    index = (rng.random(n)[:, None] * cumulative[:, -1:] > cumulative).sum(axis=1)
    return np.asarray(values, dtype=object)[index]


def _yes(flags: np.ndarray) -> np.ndarray:
    return np.where(flags, "Yes", "No").astype(object)


def _customers(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Clean customers: plausible dependencies between services, charges and tenure, and a churn label."""
    tenure = _tenure(rng, n)
    loyalty = tenure / 72
    partner = rng.random(n) < 0.48
    dependents = rng.random(n) < np.where(partner, 0.5, 0.1)
    phone = rng.random(n) < 0.9
    multiple = np.where(phone, _yes(rng.random(n) < 0.3 + 0.3 * loyalty), "No phone service")
    internet = _pick(rng, INTERNET, [0.34, 0.44, 0.22], n)
    contract_logits = np.stack([1.9 - 3.0 * loyalty, np.zeros(n), -1.6 + 2.8 * loyalty], axis=1)
    contract = _pick(rng, CONTRACTS, np.exp(contract_logits), n)
    monthly_contract = contract == "Month-to-month"
    payment = _pick(rng, PAYMENTS, np.where(monthly_contract[:, None], [0.45, 0.22, 0.17, 0.16],
                                            [0.18, 0.22, 0.30, 0.30]), n)
    columns = {"customerID": _customer_ids(rng, n), "gender": _pick(rng, ["Female", "Male"], [0.5, 0.5], n),
               "SeniorCitizen": np.where(rng.random(n) < 0.16, "1", "0").astype(object),
               "Partner": _yes(partner), "Dependents": _yes(dependents),
               "tenure": tenure.astype(str).astype(object),
               "PhoneService": _yes(phone), "MultipleLines": multiple, "InternetService": internet}
    for name, base in zip(ADD_ONS, (0.30, 0.38, 0.38, 0.30, 0.45, 0.45), strict=True):
        subscribed = _yes(rng.random(n) < base + 0.25 * loyalty)
        columns[name] = np.where(internet == "No", "No internet service", subscribed)
    columns.update({"Contract": contract, "PaperlessBilling": _yes(rng.random(n) < 0.59),
                    "PaymentMethod": payment})
    table = pd.DataFrame(columns)
    monthly = _monthly_charges(table, rng)
    total = np.round(tenure * monthly * rng.normal(1.0, 0.03, n), 2)
    table["MonthlyCharges"] = monthly.astype(str)
    table["TotalCharges"] = np.where(tenure == 0, " ", total.astype(str)).astype(object)  # as in Telco: " "
    table["Churn"] = _yes(rng.random(n) < _churn_probability(table, tenure, monthly))
    return table


def _tenure(rng: np.random.Generator, n: int) -> np.ndarray:
    """Months as a customer: many new customers, many loyal ones (as in Telco), a few brand new (0)."""
    kind = rng.random(n)
    tenure = np.where(kind < 0.35, np.minimum(rng.geometric(1 / 8, n), 72),
                      np.where(kind < 0.55, rng.integers(60, 73, n), rng.integers(1, 73, n)))
    tenure[rng.choice(n, size=max(2, n // 600), replace=False)] = 0
    return tenure


def _customer_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """Telco-style identifiers ("7590-VHVEG"), all distinct."""
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    ids = pd.Series([""] * n, dtype=object)
    todo = np.arange(n)
    while len(todo):
        digits = rng.integers(0, 10000, len(todo))
        words = ["".join(row) for row in letters[rng.integers(0, 26, (len(todo), 5))]]
        ids[todo] = [f"{d:04d}-{w}" for d, w in zip(digits, words, strict=True)]
        todo = np.flatnonzero(ids.duplicated().to_numpy())
    return ids.to_numpy()


def _monthly_charges(table: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """Dollars a month: phone lines, internet (fiber costs most) and each add-on, in steps of 0.05."""
    charges = 18.0 + 2.0 * (table["PhoneService"] == "Yes") + 5.0 * (table["MultipleLines"] == "Yes")
    charges += table["InternetService"].map({"DSL": 25.0, "Fiber optic": 48.0, "No": 0.0})
    for name, price in zip(ADD_ONS, (5.0, 5.0, 5.0, 5.0, 9.0, 9.0), strict=True):
        charges += price * (table[name] == "Yes")
    charges = charges.to_numpy() + rng.normal(0.0, 2.0, len(table))
    return np.round(np.maximum(charges, 18.25) * 20) / 20


def _churn_probability(table: pd.DataFrame, tenure: np.ndarray, monthly: np.ndarray) -> np.ndarray:
    """A logistic model of churn; the intercept is solved so that about 26% of customers churn."""
    def has(name: str, value: str) -> np.ndarray:
        return (table[name] == value).to_numpy(dtype=float)

    logit = (1.0 * has("Contract", "Month-to-month") - 1.0 * has("Contract", "Two year")
             + 0.7 * has("InternetService", "Fiber optic") - 0.4 * has("InternetService", "No")
             + 0.5 * has("PaymentMethod", "Electronic check") + 0.3 * has("SeniorCitizen", "1")
             + 0.3 * has("PaperlessBilling", "Yes") - 0.4 * has("OnlineSecurity", "Yes")
             - 0.4 * has("TechSupport", "Yes") - 0.2 * has("Partner", "Yes") - 0.2 * has("Dependents", "Yes")
             - 0.035 * tenure + 0.012 * (monthly - 65.0))
    low, high = -10.0, 10.0
    for _ in range(60):  # bisection: the mean probability grows with the intercept
        middle = (low + high) / 2
        low, high = (middle, high) if _sigmoid(logit + middle).mean() < 0.26 else (low, middle)
    return _sigmoid(logit + low)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _spoil(table: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """Add the mess of a real export, each kind on rows of its own; returns the rows touched."""
    n = len(table)
    candidates = rng.permutation(np.flatnonzero(table["tenure"].to_numpy() != "0"))  # 0 has its own quirk
    sizes = {"whitespace": max(3, n // 100), "case": max(3, n // 100), "no_charges": max(2, n // 300),
             "unknown": max(2, n // 2000), "no_label": max(2, n // 2000), "outlier": max(2, n // 2000)}
    chunks = np.split(candidates, np.cumsum(list(sizes.values())))[:-1]  # the last chunk: untouched rows
    rows = dict(zip(sizes, chunks, strict=True))
    for row in rows["whitespace"]:
        name = TEXT_COLUMNS[rng.integers(len(TEXT_COLUMNS))]
        table.at[row, name] = [" {}", "{} ", "  {} "][rng.integers(3)].format(table.at[row, name])
    for row in rows["case"]:
        name = (*YES_NO_COLUMNS, "Churn")[rng.integers(len(YES_NO_COLUMNS) + 1)]
        table.at[row, name] = [str.lower, str.upper][rng.integers(2)](table.at[row, name])
    table.loc[rows["no_charges"], "MonthlyCharges"] = ""
    table.loc[rows["unknown"], "Contract"] = "Weekly"
    table.loc[rows["no_label"], "Churn"] = ""
    table.loc[rows["outlier"], "tenure"] = "999"
    return np.concatenate([rows[kind] for kind in sizes])


def _add_duplicates(table: pd.DataFrame, rng: np.random.Generator, count: int,
                    exclude: np.ndarray) -> pd.DataFrame:
    """Exact copies of ``count`` untouched rows, shuffled in as an export that ran twice would have them."""
    sources = rng.choice(np.setdiff1d(np.arange(len(table)), exclude), size=count, replace=False)
    combined = pd.concat([table, table.iloc[sources]], ignore_index=True)
    return combined.iloc[rng.permutation(len(combined))].reset_index(drop=True)


def materialise_builtin_churn(path: Path, rows: int = 4000, seed: int = 0) -> Path:
    """Write the built-in table to ``path`` as CSV, once; a file that is not ours is never overwritten."""
    path = Path(path).expanduser()
    marker = path.with_name(path.name + ".complete")  # says which table the CSV holds, and its checksum
    wanted = {"generator": GENERATOR, "rows": rows, "seed": seed}
    if path.is_file() and _read_marker(marker) == {**wanted, "sha256": sha256_of_file(path)}:
        return path
    data = generate_churn_table(rows, seed).to_csv(index=False, lineterminator="\n").encode()
    if path.exists() and not _is_ours(path, marker) and path.read_bytes() != data:
        raise DataError(f"{path} already exists and is not the built-in churn table; it is left untouched. "
                        f"To train on that file set data.source={path} and declare its columns; for the "
                        "built-in table choose another path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(data, path)
    write_atomically((json.dumps({**wanted, "sha256": hashlib.sha256(data).hexdigest()}) + "\n").encode(), marker)
    return path


def _read_marker(marker: Path) -> dict | None:
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return None


def _is_ours(path: Path, marker: Path) -> bool:
    """A built-in table we wrote (perhaps with other rows or seed): the marker records its checksum."""
    recorded = _read_marker(marker) or {}
    return path.is_file() and recorded.get("sha256") == sha256_of_file(path)


def materialise_diabetes(path: Path) -> Path:
    """scikit-learn's bundled diabetes data (442 rows, raw units) as a CSV: the built-in regression table."""
    from sklearn.datasets import load_diabetes

    path = Path(path)
    if path.is_file():
        return path
    bunch = load_diabetes(as_frame=True, scaled=False)
    table = bunch.frame.rename(columns={"target": "progression"})
    table["sex"] = table["sex"].astype(int).astype(str)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(table.to_csv(index=False).encode(), path)
    return path


BUILTIN_TABLES = {"churn": materialise_builtin_churn, "diabetes": materialise_diabetes}


def materialise_builtin(name: str, path: Path) -> Path:
    """Write the built-in table ``name`` at ``path`` once; later runs read the same file."""
    return BUILTIN_TABLES[name](Path(path))
