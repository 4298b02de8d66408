// How the dashboard shows the outcome of an HTTP request to a node: the status, coloured by
// its class, or the kind of failure when there was no answer.

/** An HTTP status, coloured by its class (2xx, 4xx, 5xx…). */
export function HttpStatus({ code }: { code: number }) {
  return <span className={`code code-${Math.floor(code / 100)}xx`}>{code}</span>;
}

/** A request that got no HTTP answer: why. */
export function HttpFailure({ text }: { text: string }) {
  return <span className="code code-err">{text}</span>;
}
