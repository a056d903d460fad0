// flow.js (@flowjs/flow.js 2.14.1) in headless Chromium against depot.
import { librarySuite } from './lib/suite.mjs';

librarySuite('flow');
