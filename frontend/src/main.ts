import { createPinia } from "pinia";
import { createApp } from "vue";
import { api } from "@/api";
import App from "./App.vue";
import { i18n, setLocale } from "./i18n";
import { createAppRouter } from "./router";
import { useAuthStore } from "./stores/auth";
import "./styles/main.css";

const app = createApp(App);
const pinia = createPinia();
app.use(pinia);
app.use(i18n);
const router = createAppRouter();
app.use(router);

setLocale(i18n.global.locale.value);

// Any 401 outside sign-in means the session is over: back to the sign-in page, then back here.
api.onUnauthorized = () => {
  const auth = useAuthStore(pinia);
  if (!auth.isAuthenticated) return;
  auth.clear();
  const current = router.currentRoute.value;
  if (current.name !== "login") void router.push({ name: "login", query: { redirect: current.fullPath } });
};

void router.isReady().then(() => app.mount("#app"));
