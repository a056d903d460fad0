// resumable.js 1.1.0 in headless Chromium against depot.
import { librarySuite } from './lib/suite.mjs';

librarySuite('resumable');
