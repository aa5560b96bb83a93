"""GET /api/schema/: the OpenAPI schema, generated once a process and rendered once a format.

It changes only with the code. Anyone may read it without a key, and generating it takes a
fifth of a second or more of CPU: a client asking ten times a second held two sync workers,
and every API call with them. It is the API's own schema, in English: drf-spectacular's `lang`
and `version` query parameters do not change it. (A module of its own: promotions.api.schema
is the default schema class, which drf-spectacular's views need loaded first.)"""

from typing import Any, ClassVar

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request


class SchemaView(SpectacularAPIView):
    _schema: ClassVar[dict[str, Any] | None] = None
    _rendered: ClassVar[dict[type[BaseRenderer], bytes]] = {}

    @extend_schema(exclude=True)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        renderer = request.accepted_renderer
        content = self._rendered.get(type(renderer))
        if content is None:
            if SchemaView._schema is None:
                generator = self.generator_class(urlconf=self.urlconf, patterns=self.patterns)
                SchemaView._schema = generator.get_schema(request=request, public=self.serve_public)
            # Rendered as its media type says, whatever parameters an Accept header adds.
            content = renderer.render(
                SchemaView._schema, renderer.media_type, self.get_renderer_context()
            )
            self._rendered[type(renderer)] = content
        media_type = renderer.media_type
        if renderer.charset:
            media_type = f"{media_type}; charset={renderer.charset}"
        filename = f"{settings.SPECTACULAR_SETTINGS['TITLE']}.{renderer.format}"
        return HttpResponse(
            content,
            content_type=media_type,
            headers={"Content-Disposition": f'inline; filename="{filename}"'},
        )
