"""The EU AI Act risk tier: each tier from words and from declared tasks, quoted reasons, obligations, GDPR notes."""

from __future__ import annotations

import pytest

from omniforge.errors import InvalidRequestError
from omniforge.governance.risk import assess, gdpr_notes, infer_sensitivity
from omniforge.router.advisor import parse_use_case


@pytest.mark.parametrize("text", [
    "A customer-service chatbot that answers questions from our FAQ",
    "A voice assistant that answers phone calls from customers",
])
def test_talking_to_people_is_limited(text):
    risk = assess(text)
    assert risk.tier == "limited"
    assert "Art. 50(1)" in risk.articles
    assert any("interacting with an AI system" in o for o in risk.obligations)


def test_cv_screening_is_high():
    risk = assess("Screen CVs and rank job applicants for our hiring team")
    assert risk.tier == "high"
    assert any(r.startswith('"Screen CVs"') and "Annex III point 4" in r for r in risk.reasons)
    for article in ("Art. 9", "Art. 10", "Art. 12", "Art. 14", "Art. 43"):
        assert article in risk.articles
    assert any("Human oversight" in o for o in risk.obligations)
    assert risk.data_sensitivity == "personal" and any("Art. 35" in g for g in risk.gdpr)


def test_social_scoring_is_unacceptable():
    risk = assess("Social scoring of citizens based on their behaviour online")
    assert risk.tier == "unacceptable"
    assert risk.findings[0].ref == "Art. 5(1)(c)" and risk.findings[0].phrases == ["Social scoring"]
    assert any("Do not place on the market" in o for o in risk.obligations)


def test_summarizing_internal_documents_is_minimal():
    uc = parse_use_case("Summarize internal documents for the management team")
    risk = assess(uc)
    assert risk.tier == "minimal"
    assert risk.data_sensitivity == "internal" and risk.gdpr == []
    assert any("Art. 50(2)" in n for n in risk.notes)
    assert any("(Art. 4)" in o for o in risk.obligations)  # AI literacy applies to every tier


def test_emotion_recognition_depends_on_context():
    at_work = assess("Detect the emotions of employees during video meetings")
    assert at_work.tier == "unacceptable"
    assert at_work.findings[0].ref == "Art. 5(1)(f)"
    assert at_work.findings[0].phrases == ["Detect the emotions", "employees"]
    elsewhere = assess("Detect customer emotions in recorded support calls")
    assert elsewhere.tier == "high"  # Annex III point 1(c)
    assert "Annex III point 1(c)" in elsewhere.articles and "Art. 50(3)" in elsewhere.articles


def test_real_time_biometric_identification_for_police():
    risk = assess("Real-time facial recognition in public spaces for the police")
    assert risk.tier == "unacceptable" and risk.findings[0].ref == "Art. 5(1)(h)"
    assert risk.data_sensitivity == "special-category"
    after_the_fact = assess("Facial recognition to find a suspect in stored CCTV footage")
    assert after_the_fact.tier == "high"


@pytest.mark.parametrize(("text", "ref"), [
    ("Credit scoring for loan applications", "Annex III point 5"),
    ("Grade student exams automatically", "Annex III point 3"),
    ("Assess asylum applications", "Annex III point 7"),
    ("Control the electricity grid load balancing", "Annex III point 2"),
    ("A safety component for industrial machinery", "Art. 6(1) and Annex I"),
])
def test_annex_iii_areas(text, ref):
    risk = assess(text)
    assert risk.tier == "high" and ref in risk.articles


def test_synthetic_content_and_deepfakes():
    images = assess({"name": "Catalogue", "description": "product pictures", "tasks": ["image-generation"]})
    assert images.tier == "limited"
    assert any("machine-readable" in o and "Art. 50(2)" in o for o in images.obligations)
    fakes = assess("Make deepfake videos of celebrities for ads")
    assert fakes.tier == "limited" and "Art. 50(4)" in fakes.articles


def test_sensitive_data_adds_gdpr_notes_not_a_tier():
    risk = assess({"name": "Clinic notes", "description": "Summarize patient records for doctors",
                   "tasks": ["summarization"]})
    assert risk.tier == "minimal"
    assert risk.data_sensitivity == "special-category"
    assert any("Art. 9(2)" in g for g in risk.gdpr)
    assert infer_sensitivity("a FAQ for our customers") == ("personal", "customers")
    assert infer_sensitivity("pictures of red squares") == (None, None)


def test_bad_input():
    with pytest.raises(InvalidRequestError):
        assess("   ")
    with pytest.raises(InvalidRequestError) as exc:
        gdpr_notes("secret")
    assert exc.value.param == "data_sensitivity"
    with pytest.raises(InvalidRequestError):
        assess({"name": "x", "tasks": "chat"})
