import { useState } from 'preact/hooks';
import { ErrorNotice, elsewhereHint } from './ui.tsx';

/** One button's call and what came of it: busy while it runs, then a result line or an error. */
export interface Action {
  busy: boolean;
  result: string | undefined;
  error: unknown;
  /** Runs `call` (its answer is the result line); true when it succeeded. */
  run(call: () => Promise<string | undefined>): Promise<boolean>;
  /** Forgets the last outcome (a new question is being asked). */
  reset(): void;
}

export function useAction(): Action {
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<string | undefined>();
  const [error, setError] = useState<unknown>();
  const reset = () => {
    setResult(undefined);
    setError(undefined);
  };
  return {
    busy,
    result,
    error,
    reset,
    async run(call) {
      setBusy(true);
      reset();
      try {
        setResult(await call());
        return true;
      } catch (err) {
        setError(err);
        return false;
      } finally {
        setBusy(false);
      }
    },
  };
}

/**
 * An action's outcome: the result line (announced), or the error with its code and, for a 404
 * on a port that does not serve the call (ADMIN_PORT set), which port does.
 */
export function Outcome(props: {
  action: Pick<Action, 'result' | 'error'>;
  title: string;
  where: { what: string; port: 'public' | 'admin' };
}) {
  const { result, error } = props.action;
  const hint = elsewhereHint(error, props.where.what, props.where.port);
  return (
    <>
      <div role="status">{result && <p class="notice">{result}</p>}</div>
      {error !== undefined && (
        <ErrorNotice error={error} title={props.title}>
          {hint && <p>{hint}</p>}
        </ErrorNotice>
      )}
    </>
  );
}

/** Where the admin pages' calls are served. */
export const ADMIN_CALLS = { what: 'admin calls', port: 'admin' } as const;
/** Where the compliance page's calls are served. */
export const COMPLIANCE_CALLS = { what: 'compliance calls', port: 'public' } as const;
