import { defineConfig } from '@bkt/core';
const x: number = 1;
export default defineConfig({ root: '/x' + x });
