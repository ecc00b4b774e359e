// The dashboard's build: a static single-page app the gateway serves at `/`.
// `base: "./"` makes every URL relative, so the app also works behind a proxy that
// serves the gateway under a path prefix; the app calls the API relative to itself too.
import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";

// `npm run dev` proxies the API to a local `hive dev` (override with HIVE_GATEWAY).
const gateway = process.env.HIVE_GATEWAY ?? "http://127.0.0.1:8000";

export default defineConfig({
  base: "./",
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 800,
  },
  server: {
    proxy: {
      "/api": { target: gateway, ws: true, changeOrigin: true },
    },
  },
  test: {
    environment: "jsdom",
    globals: true,
    setupFiles: ["./src/test/setup.ts"],
    include: ["src/**/*.test.{ts,tsx}"],
  },
});
