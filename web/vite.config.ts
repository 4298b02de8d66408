/// <reference types="vitest/config" />
// The dashboard's build. `npm run dev` serves it on :3000 and proxies the gateway's
// grpc-web (`/farm.v1.FarmService/*`) and REST (`/api`, `/docs`, `/metrics`) to :8000
// (or FARM_GATEWAY, e.g. http://127.0.0.1:18000). `npm run build` writes dist/, which the
// gateway embeds when it is built (see gateway/build.rs).
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

const gateway = process.env.FARM_GATEWAY ?? "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [react()],
  server: {
    port: 3000,
    strictPort: true,
    proxy: {
      "/farm.v1.FarmService": { target: gateway, changeOrigin: true },
      "/api": { target: gateway, changeOrigin: true },
      "/docs": { target: gateway, changeOrigin: true },
      "/openapi.json": { target: gateway, changeOrigin: true },
      "/metrics": { target: gateway, changeOrigin: true },
    },
  },
  build: {
    target: "es2022",
    sourcemap: false,
    chunkSizeWarningLimit: 600,
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
