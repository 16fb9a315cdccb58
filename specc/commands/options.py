"""Options shared by the commands that read a spec and can override its generator or budget."""

import typer

SPEC_ARG = typer.Argument(..., help="The spec file (YAML).")
JSON_OPT = typer.Option(False, "--json", help="Print JSON instead of tables.")
PROVIDER_OPT = typer.Option(None, "--provider", help="Override generator.provider (local or openai).")
MODEL_OPT = typer.Option(None, "--model", help="Override generator.model.")
BASE_URL_OPT = typer.Option(None, "--base-url", help="Override generator.base_url (an OpenAI-compatible /v1 URL).")
BUDGET_OPT = typer.Option(None, "--budget", min=1, help="Override corpus.budget.tokens (the corpus size in tokens).")
CACHE_OPT = typer.Option(None, "--cache", help="The generation cache (default: SPECC_CACHE or .specc/cache.sqlite beside the spec).")
