/** The suite's version, reported to Kong for every plugin (kept equal to package.json by a test). */
export const SUITE_VERSION = '0.1.0';
