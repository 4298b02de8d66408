import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./App";
import { openWatch } from "./api/client";
import { metricHistory } from "./api/history";
import { initialTheme, StoreContext, ToastProvider } from "./components/context";
import { FarmStore } from "./state/store";
import "./styles/app.css";

document.documentElement.dataset.theme = initialTheme();

let storage: Storage | undefined;
try {
  storage = window.localStorage;
} catch {
  storage = undefined;
}
const store = new FarmStore({ open: openWatch, storage, metricHistory: (fromMs, signal) => metricHistory(0, fromMs, signal) });
store.start();
// For the end-to-end tests and the benchmark: a read-only peek at the live store.
(window as unknown as { __farm?: FarmStore }).__farm = store;

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <StoreContext.Provider value={store}>
      <ToastProvider>
        <App />
      </ToastProvider>
    </StoreContext.Provider>
  </StrictMode>,
);
