// Asks for the farm's token when the gateway, listening beyond loopback, refused a change for
// want of it (see api/auth.ts): a modal dialog over whatever the page shows. Focus moves into
// it and stays there, Escape cancels, focus goes back where it was.
import { useEffect, useRef, useState, useSyncExternalStore, type FormEvent, type KeyboardEvent } from "react";
import { TOKEN_FILE, tokenProblem, type TokenPrompt } from "../api/auth";

export function TokenDialog({ prompt }: { prompt: TokenPrompt }) {
  const question = useSyncExternalStore(prompt.subscribe, prompt.getSnapshot);
  if (!question) return null;
  return <TokenForm key={question.id} refused={question.refused} answer={prompt.answer} />;
}

function TokenForm({ refused, answer }: { refused: string | null; answer: (token: string | null) => void }) {
  const [token, setToken] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  const panel = useRef<HTMLDivElement>(null);
  const input = useRef<HTMLInputElement>(null);

  useEffect(() => {
    const before = document.activeElement as HTMLElement | null;
    input.current?.focus();
    return () => {
      // Back where it was, unless that left the page (a drawer closed meanwhile).
      if (before?.isConnected) before.focus?.();
    };
  }, []);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    const wrong = tokenProblem(token);
    if (wrong) {
      setProblem(wrong);
      input.current?.focus();
      return;
    }
    answer(token);
  };

  const onKeyDown = (e: KeyboardEvent) => {
    if (e.key === "Escape") {
      // Not also the drawer underneath.
      e.stopPropagation();
      answer(null);
    } else if (e.key === "Tab") {
      const focusable = panel.current?.querySelectorAll<HTMLElement>("input, button");
      if (!focusable?.length) return;
      const first = focusable[0];
      const last = focusable[focusable.length - 1];
      if (e.shiftKey && document.activeElement === first) {
        e.preventDefault();
        last.focus();
      } else if (!e.shiftKey && document.activeElement === last) {
        e.preventDefault();
        first.focus();
      }
    }
  };

  const error = problem ?? (refused ? `The gateway refused this token: ${refused}` : null);
  return (
    <div className="modal-backdrop">
      <div
        className="modal"
        role="dialog"
        aria-modal="true"
        aria-labelledby="token-title"
        aria-describedby="token-help"
        ref={panel}
        onKeyDown={onKeyDown}
        data-testid="token-dialog"
      >
        <form onSubmit={submit} noValidate>
          <h2 id="token-title">The farm's token</h2>
          <p id="token-help" className="muted">
            This gateway listens beyond loopback, so changing the farm needs its token. It is kept on the farm's machine in{" "}
            <code>{TOKEN_FILE}</code> (or the data directory given with <code>--data-dir</code>), or given as <code>FARM_TOKEN</code>. This tab
            keeps it until it closes.
          </p>
          {error && (
            <p className="error-text" role="alert" id="token-error">
              {error}
            </p>
          )}
          <label className="field">
            <span>Farm token</span>
            <input
              ref={input}
              type="password"
              name="token"
              autoComplete="off"
              spellCheck={false}
              value={token}
              onChange={(e) => {
                setToken(e.target.value);
                setProblem(null);
              }}
              aria-invalid={error !== null}
              aria-describedby={error ? "token-error" : undefined}
              required
            />
          </label>
          <div className="form-actions">
            <button type="submit" className="btn btn-primary">
              Use token
            </button>
            <button type="button" className="btn" onClick={() => answer(null)}>
              Cancel
            </button>
          </div>
        </form>
      </div>
    </div>
  );
}
