import type { ComponentType } from 'preact';
import type { Scope, Whoami } from './api.ts';
import { CompliancePage } from './pages/compliance.tsx';
import { KeysPage } from './pages/keys.tsx';
import { LivePage } from './pages/live.tsx';
import { MaterializationsPage } from './pages/materializations.tsx';
import { PipelinePage } from './pages/pipeline.tsx';
import { PlansPage } from './pages/plans.tsx';
import { RetentionPage } from './pages/retention.tsx';
import { SourcesPage } from './pages/sources.tsx';

/** What the shell gives every page. */
export interface PageProps {
  who: Whoami;
  /** The query of the page's address (`#/live?outcome=refused`): its state, kept on reload. */
  params: URLSearchParams;
  /** Replaces the page's query (a new history entry, so Back undoes it). */
  setParams(next: URLSearchParams): void;
}

export interface Route {
  /** The address is `#/<path>`. */
  path: string;
  /** Navigation label and document title. */
  title: string;
  /** A key with any of these may use the page; other keys are told which scope it needs. */
  needs: readonly Scope[];
  page: ComponentType<PageProps>;
}

/**
 * The console's pages, in the order the navigation lists them; the first is the landing page.
 * A new page is its file under `pages/` and one line here.
 */
export const ROUTES: readonly Route[] = [
  { path: 'live', title: 'Live', needs: ['read'], page: LivePage },
  { path: 'pipeline', title: 'Pipeline health', needs: ['read', 'admin'], page: PipelinePage },
  { path: 'compliance', title: 'Compliance', needs: ['dsar'], page: CompliancePage },
  { path: 'plans', title: 'Tracking plans', needs: ['read', 'admin'], page: PlansPage },
  { path: 'sources', title: 'Sources', needs: ['admin'], page: SourcesPage },
  { path: 'materializations', title: 'Materializations', needs: ['admin'], page: MaterializationsPage },
  { path: 'retention', title: 'Retention', needs: ['admin'], page: RetentionPage },
  { path: 'keys', title: 'Keys', needs: ['admin'], page: KeysPage },
];
