"""Search: semantic, keyword or hybrid, over the scope's range; a clear message where
semantic search cannot run (no embedding provider, or no pgvector)."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.shortcuts import render

from observability import ai
from observability.ai import search
from observability.analytics import sketches
from observability.ui.explorer import SemanticUnavailable, semantic_provider
from observability.ui.pages import Page, project_page
from observability.ui.scope import check

RESULTS_SHOWN = 50


class SearchForm(forms.Form):
    q = forms.CharField(required=False, max_length=settings.APM_SEARCH_MAX_QUERY_CHARS)
    mode = forms.ChoiceField(required=False, choices=[(m, m) for m in search.MODES])
    service = forms.CharField(required=False, max_length=128)


def default_mode(page: Page) -> str:
    semantic = settings.EMBEDDING_PROVIDER != "none" and sketches.of(page.database).has_pgvector
    return "hybrid" if semantic else "keyword"


@project_page
def search_page(request, page: Page):
    form = SearchForm(request.GET)
    data = check(form)
    mode = data["mode"] or default_mode(page)
    context = page.context(form=form, mode=mode, modes=search.MODES, results=None, error=None)
    text, status = data["q"].strip(), 200
    if text:
        filters = search.SearchFilters(
            service=data["service"] or None,
            start=page.scope.window.start,
            end=page.scope.window.end,
        )
        try:
            provider = None if mode == "keyword" else semantic_provider(page)
            hits = search.find(
                page.database, provider, page.project.pk, text, mode, filters, RESULTS_SHOWN
            )
            context["results"] = search.requests_of(page.database, page.project.pk, hits)
        except SemanticUnavailable as exc:
            context["error"], status = str(exc), 400
        except ai.EmbeddingError as exc:
            context["error"] = f"The embedding provider failed ({exc}); keyword search works."
            status = 503
    return render(request, "ui/search.html", context, status=status)
