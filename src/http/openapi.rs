//! The OpenAPI 3 document, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{analytics, attendees, error, registrations, users, webinars};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Webinar platform API", description = "REST API of the self-hosted webinar platform. Realtime work (media, chat, captions) runs over Socket.IO at /socket.io."),
    paths(
        users::login, users::create,
        webinars::create, webinars::list, webinars::get, webinars::update,
        registrations::create, registrations::list, registrations::approve, registrations::reject,
        registrations::join,
        attendees::list, attendees::set_role,
        analytics::get,
    ),
    components(schemas(error::ErrorBody, error::ErrorInfo)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
